// Package kubernetes checks the example manifests beside it: that they parse,
// that the probes name paths a running pgcloak serves, that ports and volumes
// agree with the embedded pgcloak config, and that the config loads with
// pgcloak's own loader.
package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/integration/harness"
)

// The parts of the Kubernetes objects the checks read.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`      // ConfigMap
	Spec yaml.Node         `yaml:"spec"`      // decoded per kind
	Res  []string          `yaml:"resources"` // Kustomization
	file string
}

type deploymentSpec struct {
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	ServiceAccountName string          `yaml:"serviceAccountName"`
	AutomountToken     *bool           `yaml:"automountServiceAccountToken"`
	SecurityContext    securityContext `yaml:"securityContext"`
	Containers         []container     `yaml:"containers"`
	Volumes            []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

type securityContext struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	RunAsUser                *int  `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	Capabilities             struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
}

type container struct {
	Name  string   `yaml:"name"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe  *probe          `yaml:"readinessProbe"`
	LivenessProbe   *probe          `yaml:"livenessProbe"`
	SecurityContext securityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

type serviceSpec struct {
	Selector map[string]string `yaml:"selector"`
	Ports    []struct {
		Name       string    `yaml:"name"`
		Port       int       `yaml:"port"`
		TargetPort yaml.Node `yaml:"targetPort"`
	} `yaml:"ports"`
}

// saTokenDir is where Kubernetes mounts the service account token when
// automountServiceAccountToken is on.
const saTokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func loadObjects(t *testing.T) []*object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var objs []*object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(false)
		for {
			o := &object{file: f}
			if err := dec.Decode(o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" || o.APIVersion == "" {
				t.Fatalf("%s: a document without kind or apiVersion", f)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

func find(t *testing.T, objs []*object, kind string) *object {
	t.Helper()
	var found *object
	for _, o := range objs {
		if o.Kind == kind {
			if found != nil {
				t.Fatalf("two %s objects (%s, %s): the checks expect one", kind, found.file, o.file)
			}
			found = o
		}
	}
	if found == nil {
		t.Fatalf("no %s in the manifests", kind)
	}
	return found
}

func decodeSpec(t *testing.T, o *object, v any) {
	t.Helper()
	if err := o.Spec.Decode(v); err != nil {
		t.Fatalf("%s %s: spec: %v", o.Kind, o.Metadata.Name, err)
	}
}

// containerPort resolves a probe's or Service's port (a number or a name) to
// the container's port number.
func containerPort(t *testing.T, c container, port yaml.Node) int {
	t.Helper()
	if n, err := strconv.Atoi(port.Value); err == nil {
		for _, p := range c.Ports {
			if p.ContainerPort == n {
				return n
			}
		}
		t.Fatalf("port %d is not a containerPort of %s", n, c.Name)
	}
	for _, p := range c.Ports {
		if p.Name == port.Value {
			return p.ContainerPort
		}
	}
	t.Fatalf("port %q is not a named port of container %s", port.Value, c.Name)
	return 0
}

func portOf(t *testing.T, key, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("config %s %q: %v", key, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("config %s %q: %v", key, addr, err)
	}
	return n
}

func TestManifests(t *testing.T) {
	objs := loadObjects(t)

	// kustomization.yaml applies every other manifest.
	kust := find(t, objs, "Kustomization")
	var files []string
	for _, o := range objs {
		if o.Kind != "Kustomization" && !slices.Contains(files, o.file) {
			files = append(files, o.file)
		}
	}
	slices.Sort(files)
	res := slices.Sorted(slices.Values(kust.Res))
	if !reflect.DeepEqual(res, files) {
		t.Errorf("kustomization.yaml resources %v, manifests %v", res, files)
	}

	dep := find(t, objs, "Deployment")
	var ds deploymentSpec
	decodeSpec(t, dep, &ds)
	pod := ds.Template.Spec
	for k, v := range ds.Selector.MatchLabels {
		if ds.Template.Metadata.Labels[k] != v {
			t.Errorf("Deployment selector %s=%s does not match the pod labels %v", k, v, ds.Template.Metadata.Labels)
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]

	// Non-root, read-only root file system, no capabilities, no escalation.
	if pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if u := pod.SecurityContext.RunAsUser; u == nil || *u == 0 {
		t.Error("pod securityContext.runAsUser is unset or 0")
	}
	sc := c.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container allowPrivilegeEscalation is not false")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container capabilities: drop %v add %v, want drop [ALL] and nothing added", sc.Capabilities.Drop, sc.Capabilities.Add)
	}

	// The ServiceAccount that Vault's Kubernetes auth binds is the pod's.
	sa := find(t, objs, "ServiceAccount")
	if pod.ServiceAccountName != sa.Metadata.Name {
		t.Errorf("pod serviceAccountName %q, ServiceAccount %q", pod.ServiceAccountName, sa.Metadata.Name)
	}

	// The config comes from the ConfigMap, mounted where args say.
	cm := find(t, objs, "ConfigMap")
	text, ok := cm.Data["pgcloak.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no pgcloak.yaml", cm.Metadata.Name)
	}
	cfgPath := ""
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			cfgPath = c.Args[i+1]
		}
	}
	if !slices.Equal(c.Args[:1], []string{"serve"}) || cfgPath == "" {
		t.Fatalf("container args %v: want serve --config PATH", c.Args)
	}
	mounts := map[string]string{} // mount path → volume name
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
		if !m.ReadOnly {
			t.Errorf("volume %s at %s is not readOnly", m.Name, m.MountPath)
		}
	}
	volumeOf := func(path string) string {
		for mp, name := range mounts {
			if path == mp || strings.HasPrefix(path, mp+"/") {
				return name
			}
		}
		if strings.HasPrefix(path, saTokenDir+"/") && (pod.AutomountToken == nil || *pod.AutomountToken) {
			return "(service account token)"
		}
		return ""
	}
	cfgVolume := volumeOf(cfgPath)
	for _, v := range pod.Volumes {
		if v.Name == cfgVolume && (v.ConfigMap == nil || v.ConfigMap.Name != cm.Metadata.Name) {
			t.Errorf("--config %s is on volume %s, which is not ConfigMap %s", cfgPath, cfgVolume, cm.Metadata.Name)
		}
	}
	if cfgVolume == "" {
		t.Errorf("--config %s is on no volume", cfgPath)
	}

	// Every file that the config names is on a mounted volume. Loading it
	// here needs those files: the test makes them under a scratch root and
	// points the config there.
	paths := configPaths(t, text)
	if len(paths) == 0 {
		t.Fatal("the config names no file; the checks below expect TLS, CA and token files")
	}
	root := t.TempDir()
	ca := harness.NewCA(t, "pgcloak-k8s-test")
	pair := ca.Issue(t, "pgcloak")
	var pairs []string
	for _, p := range paths {
		if volumeOf(p) == "" {
			t.Errorf("config names %s, which is on no volume of the Deployment (mounts: %v)", p, mounts)
		}
		var content []byte
		switch {
		case strings.HasSuffix(p, "tls.crt"):
			content = pair.CertPEM
		case strings.HasSuffix(p, "tls.key"):
			content = pair.KeyPEM
		case strings.HasSuffix(p, ".crt"):
			content = ca.CertPEM
		default:
			content = []byte("a service account JWT\n")
		}
		local := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, content, 0o600); err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, p, local)
	}
	localText := strings.NewReplacer(pairs...).Replace(text)
	cfg, err := config.Parse(filepath.Join(root, cfgPath), []byte(localText))
	if err != nil {
		t.Fatalf("the ConfigMap's pgcloak.yaml does not load:\n%v", err)
	}
	if v := cfg.KMS; v == nil || v.Vault == nil || v.Vault.Auth.Method != config.AuthKubernetes || v.Vault.Auth.Role == "" {
		t.Errorf("config does not log in to Vault with the Kubernetes auth method and a role: %+v", cfg.KMS)
	}
	if len(cfg.Tables) == 0 {
		t.Error("config protects no column")
	}

	// Probes: /readyz for readiness, /healthz for liveness, on the port
	// that metrics_listen opens; the PostgreSQL port is listen's.
	if cfg.MetricsListen == "" {
		t.Fatal("config has no metrics_listen: the probes would have nothing to ask")
	}
	metricsPort := portOf(t, "metrics_listen", cfg.MetricsListen)
	for name, pr := range map[string]*probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", name)
			continue
		}
		if got := containerPort(t, c, pr.HTTPGet.Port); got != metricsPort {
			t.Errorf("%s port %d, but metrics_listen is %s", name, got, cfg.MetricsListen)
		}
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes: readiness %s, liveness %s; want /readyz and /healthz", c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
	}
	servePort := portOf(t, "listen", cfg.Listen)

	// The Service reaches the pods, on the ports pgcloak listens on.
	svc := find(t, objs, "Service")
	var ss serviceSpec
	decodeSpec(t, svc, &ss)
	for k, v := range ss.Selector {
		if ds.Template.Metadata.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not select the pods (labels %v)", k, v, ds.Template.Metadata.Labels)
		}
	}
	var targets []int
	for _, p := range ss.Ports {
		targets = append(targets, containerPort(t, c, p.TargetPort))
	}
	if !slices.Contains(targets, servePort) {
		t.Errorf("Service targets ports %v; none is listen's %d", targets, servePort)
	}

	probeRunningServer(t, c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
}

// configPaths returns the absolute file paths that a pgcloak config names,
// in YAML values and inside libpq strings (sslrootcert=/…).
func configPaths(t *testing.T, text string) []string {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("pgcloak.yaml in the ConfigMap: %v", err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case string:
			for _, f := range strings.Fields(v) {
				if _, val, ok := strings.Cut(f, "="); ok {
					f = val
				}
				if strings.HasPrefix(f, "/") && !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
		}
	}
	walk(doc)
	slices.Sort(out)
	return out
}

// probeRunningServer starts pgcloak serve and asks the probe paths: a path
// the manifests name but serve does not serve would fail here.
func probeRunningServer(t *testing.T, readiness, liveness string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "pgcloak")
	build := exec.Command(harness.RequireBinary(t, "go"), "build", "-o", bin, "github.com/pgcloak/pgcloak")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	metrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nupstream: \"host=127.0.0.1 port=%d\"\nmetrics_listen: %s\n",
		harness.FreePort(t), harness.FreePort(t), metrics)
	path := filepath.Join(dir, "pgcloak.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", path)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("pgcloak serve:\n%s", logs.String())
		}
	})
	if err := harness.WaitTCP(metrics, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	get := func(p string) (int, string) {
		resp, err := http.Get("http://" + metrics + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, p := range []string{readiness, liveness} {
		if code, body := get(p); code != http.StatusOK {
			t.Errorf("GET %s on a ready pgcloak: %d %s", p, code, body)
		}
	}
	// The check can fail: a path serve does not serve is 404.
	if code, _ := get("/ready"); code != http.StatusNotFound {
		t.Errorf("GET /ready: %d, want 404 (so the probe check above means something)", code)
	}
}
