// Package packaging tests the Debian package and the systemd unit that
// packaging/deb.sh builds: it installs the package on this machine with dpkg,
// runs pgcloak from it as the service user, verifies the unit with
// systemd-analyze and removes the package again.
package packaging

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/config"
)

// need returns the path of a program the test cannot do without. It skips
// with the reason on a developer machine without it, and fails in CI, where
// .ci/run installs it.
func need(t *testing.T, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (%s); on Debian: apt-get install -y %s", name, why, map[string]string{
		"dpkg-deb": "dpkg", "dpkg": "dpkg", "systemd-analyze": "systemd",
	}[name])
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebInstallRunVerifyRemove is the operator's path: dpkg -i, pgcloak
// version, the service user and config, the unit verified, dpkg -r and -P.
func TestDebInstallRunVerifyRemove(t *testing.T) {
	need(t, "dpkg-deb", "builds the package")
	dpkg := need(t, "dpkg", "installs the package")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("dpkg -i needs root; CI runs as root")
		}
		t.Skip("dpkg -i needs root (CI runs as root)")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "pgcloak").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("pgcloak is already installed as a package (%s); remove it first (dpkg -P pgcloak): this test installs and removes it", out)
	}

	const version = "v0.0.0-test"
	out := t.TempDir()
	build := exec.Command("./deb.sh", runtime.GOARCH)
	build.Env = append(os.Environ(), "VERSION="+version, "OUT="+out)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("deb.sh: %v\n%s", err, b)
	}
	deb := filepath.Join(out, "pgcloak_0.0.0.test_"+runtime.GOARCH+".deb")
	if _, err := os.Stat(deb); err != nil {
		t.Fatal(err)
	}

	contents := run(t, "dpkg-deb", "--contents", deb)
	for _, f := range []string{"./usr/bin/pgcloak", "./lib/systemd/system/pgcloak.service", "./etc/pgcloak/pgcloak.yaml",
		"./usr/share/doc/pgcloak/copyright", "./usr/share/doc/pgcloak/THIRD_PARTY_NOTICES.md"} {
		if !strings.Contains(contents, " "+f+"\n") && !strings.Contains(contents, " "+f+" ") {
			t.Errorf("package lacks %s:\n%s", f, contents)
		}
	}

	t.Cleanup(func() {
		// Purge even when a step failed, so the machine is left as found.
		if b, err := exec.Command(dpkg, "-P", "pgcloak").CombinedOutput(); err != nil {
			t.Logf("dpkg -P pgcloak: %v\n%s", err, b)
		}
	})
	t.Logf("dpkg -i:\n%s", run(t, dpkg, "-i", deb))

	// The binary from the package, by its installed path.
	got := strings.TrimSpace(run(t, "/usr/bin/pgcloak", "version"))
	t.Logf("/usr/bin/pgcloak version: %s", got)
	if got != "pgcloak "+version {
		t.Errorf("/usr/bin/pgcloak version = %q, want %q", got, "pgcloak "+version)
	}

	// postinst made a system user without a login, which can read the
	// config that root owns.
	u, err := user.Lookup("pgcloak")
	if err != nil {
		t.Fatalf("postinst made no pgcloak user: %v", err)
	}
	if passwd := run(t, "getent", "passwd", "pgcloak"); !strings.HasSuffix(strings.TrimSpace(passwd), ":/usr/sbin/nologin") {
		t.Errorf("pgcloak user has a login shell: %s", passwd)
	}
	checkMode(t, "/etc/pgcloak/pgcloak.yaml", 0o640, "root", "pgcloak")
	checkMode(t, "/etc/pgcloak", 0o750|os.ModeDir, "root", "pgcloak")
	if _, err := config.Load("/etc/pgcloak/pgcloak.yaml"); err != nil {
		t.Errorf("the shipped config does not load: %v", err)
	}
	if conf := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "pgcloak"); !strings.Contains(conf, "/etc/pgcloak/pgcloak.yaml") {
		t.Errorf("/etc/pgcloak/pgcloak.yaml is not a conffile: %q", conf)
	}

	serveAsServiceUser(t, u)
	verifyUnit(t, "/lib/systemd/system/pgcloak.service")

	t.Logf("dpkg -r:\n%s", run(t, dpkg, "-r", "pgcloak"))
	if _, err := os.Stat("/usr/bin/pgcloak"); !os.IsNotExist(err) {
		t.Errorf("after dpkg -r, /usr/bin/pgcloak: %v (want gone)", err)
	}
	if _, err := os.Stat("/etc/pgcloak/pgcloak.yaml"); err != nil {
		t.Errorf("dpkg -r removed the conffile (only purge may): %v", err)
	}
	run(t, dpkg, "-P", "pgcloak")
	if _, err := os.Stat("/etc/pgcloak"); !os.IsNotExist(err) {
		t.Errorf("after dpkg -P, /etc/pgcloak: %v (want gone)", err)
	}
}

func checkMode(t *testing.T, path string, mode os.FileMode, owner, group string) {
	t.Helper()
	st := run(t, "stat", "-c", "%U %G %a", path)
	want := fmt.Sprintf("%s %s %o", owner, group, mode.Perm())
	if strings.TrimSpace(st) != want {
		t.Errorf("%s: owner, group, mode = %s, want %s", path, strings.TrimSpace(st), want)
	}
}

// serveAsServiceUser starts the installed binary as the pgcloak user with no
// capabilities, as the unit does, on a copy of the shipped config with free
// ports (6432 and 9187 may be taken on a shared machine), and waits for
// /healthz and /readyz.
func serveAsServiceUser(t *testing.T, u *user.User) {
	t.Helper()
	setpriv := need(t, "setpriv", "drops to the service user")
	shipped, err := os.ReadFile("/etc/pgcloak/pgcloak.yaml")
	if err != nil {
		t.Fatal(err)
	}
	listen, metrics := freeAddr(t), freeAddr(t)
	cfg := strings.Replace(string(shipped), "listen: 127.0.0.1:6432", "listen: "+listen, 1)
	cfg = strings.Replace(cfg, "metrics_listen: 127.0.0.1:9187", "metrics_listen: "+metrics, 1)
	if cfg == string(shipped) {
		t.Fatal("shipped config has no listen/metrics_listen lines to rewrite")
	}
	dir, err := os.MkdirTemp("", "pgcloak-deb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "pgcloak.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid="+u.Uid, "--regid="+u.Gid, "--init-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
		"/usr/bin/pgcloak", "serve", "--config", path)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("pgcloak serve output:\n%s", logs.String())
		}
	}()
	for _, p := range []string{"/healthz", "/readyz"} {
		var last string
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := http.Get("http://" + metrics + p)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				last = fmt.Sprintf("%d %s", resp.StatusCode, body)
			} else {
				last = err.Error()
			}
			if time.Now().After(deadline) {
				t.Fatalf("pgcloak serve as user pgcloak: GET %s: %s", p, last)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("pgcloak serve runs as uid %s without capabilities; /healthz and /readyz answer 200", u.Uid)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// verifyUnit runs systemd-analyze verify on the installed unit. In a
// container without systemd as PID 1 it still loads the unit file and checks
// every directive and the ExecStart binary; --man=no because the package
// ships no man page and the documentation URL is not fetched. Any line of
// its output that names the unit is a failure: systemd-analyze reports bad
// directives as warnings with a zero exit status.
func verifyUnit(t *testing.T, unit string) {
	t.Helper()
	sa := need(t, "systemd-analyze", "verifies the unit")
	cmd := exec.Command(sa, "verify", "--man=no", unit)
	b, err := cmd.CombinedOutput()
	t.Logf("systemd-analyze verify --man=no %s: exit %v, output:\n%s", unit, cmd.ProcessState.ExitCode(), b)
	if err != nil {
		t.Errorf("systemd-analyze verify %s: %v", unit, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "pgcloak") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}

	// systemd's own exposure score of the sandbox (0 best, 10 worst):
	// 1.5 when written; --threshold makes it fail above 2.0.
	sec := exec.Command(sa, "security", "--offline=yes", "--threshold=20", "--no-pager", unit)
	b, err = sec.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	t.Logf("systemd-analyze security --offline=yes %s: %s", unit, lines[len(lines)-1])
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v):\n%s", err, b)
	}

	// The hardening that the README promises is in the unit as installed.
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"User=pgcloak", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
		"PrivateTmp=yes", "CapabilityBoundingSet=\n", "AmbientCapabilities=\n", "RestrictAddressFamilies=",
		"SystemCallFilter=@system-service", "ExecStart=/usr/bin/pgcloak serve --config /etc/pgcloak/pgcloak.yaml"} {
		if !strings.Contains(string(text), "\n"+d) {
			t.Errorf("unit lacks %q", strings.TrimSpace(d))
		}
	}
}
