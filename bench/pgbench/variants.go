package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// A run can measure several pgcloaks side by side: binaries (-pgcloak,
// repeatable: before and after a change) times GOMAXPROCS values
// (-gomaxprocs 1,0). Each combination is a variant; the targets pgcloak and
// pgcloak-enc run once per variant, named with a suffix that tells them
// apart (pgcloak-before-p1, pgcloak-after-p1 …; no suffix when there is
// only one).

// binarySpec is one -pgcloak value: [LABEL=]SPEC, where SPEC is "." (build
// this checkout), git:REF (build that commit of this repository) or the path
// of a pgcloak binary.
type binarySpec struct {
	label, spec string
}

func parseBinarySpec(v string) (binarySpec, error) {
	label, spec, ok := strings.Cut(v, "=")
	if !ok {
		label, spec = "", v
	}
	if spec == "" {
		return binarySpec{}, fmt.Errorf("-pgcloak %q: empty binary", v)
	}
	if label == "" {
		switch {
		case spec == ".":
			label = "this"
		case strings.HasPrefix(spec, "git:"):
			label = strings.TrimPrefix(spec, "git:")
		default:
			label = filepath.Base(spec)
		}
	}
	if strings.ContainsAny(label, "/, ") {
		return binarySpec{}, fmt.Errorf("-pgcloak %q: the label must not contain '/', ',' or spaces (it names targets in ratios)", v)
	}
	return binarySpec{label: label, spec: spec}, nil
}

// variant is one way of running pgcloak.
type variant struct {
	label   string // the binary's label
	bin     string // path of the binary
	version string // commit and Go version, for the report
	procs   int    // GOMAXPROCS; 0: Go's default
	suffix  string // appended to a target kind's name
}

// makeVariants builds (or finds) the binaries and returns one variant per
// binary and GOMAXPROCS, in that order (binaries outer).
func makeVariants(ctx context.Context, e *env, specs []binarySpec, procs []int) ([]variant, error) {
	var vs []variant
	for _, b := range specs {
		bin, version, err := resolveBinary(ctx, e, b)
		if err != nil {
			return nil, err
		}
		for _, p := range procs {
			v := variant{label: b.label, bin: bin, version: version, procs: p}
			if len(specs) > 1 {
				v.suffix += "-" + b.label
			}
			if len(procs) > 1 {
				v.suffix += "-p" + strconv.Itoa(effectiveProcs(p))
			}
			vs = append(vs, v)
		}
	}
	return vs, nil
}

// effectiveProcs is the GOMAXPROCS a child gets: p, or the CPU count (Go's
// default, unless a cgroup limits the CPUs).
func effectiveProcs(p int) int {
	if p > 0 {
		return p
	}
	return runtime.NumCPU()
}

// resolveBinary returns the binary of a spec and its version.
func resolveBinary(ctx context.Context, e *env, b binarySpec) (bin, version string, err error) {
	switch {
	case b.spec == ".":
		if bin, err = buildPgcloak(ctx, e, ""); err != nil {
			return "", "", err
		}
		version = pgcloakVersion(bin)
		if rev, goVersion, _ := strings.Cut(version, " "); rev == "unknown" {
			// Not stamped (GOFLAGS=-buildvcs=false, a worktree): ask git.
			version = gitCommit(ctx, "HEAD", true) + " " + goVersion
		}
		return bin, version, nil
	case strings.HasPrefix(b.spec, "git:"):
		ref := strings.TrimPrefix(b.spec, "git:")
		if bin, err = buildPgcloak(ctx, e, ref); err != nil {
			return "", "", err
		}
		_, goVersion, _ := strings.Cut(pgcloakVersion(bin), " ") // no VCS stamp in an archive
		return bin, gitCommit(ctx, ref, false) + " " + goVersion, nil
	default:
		if _, err := os.Stat(b.spec); err != nil {
			return "", "", fmt.Errorf("-pgcloak: %w", err)
		}
		abs, err := filepath.Abs(b.spec)
		if err != nil {
			return "", "", err
		}
		return abs, pgcloakVersion(abs), nil
	}
}

// gitCommit returns the short commit of ref, with "+modified" when dirty is
// asked and the checkout has uncommitted changes.
func gitCommit(ctx context.Context, ref string, dirty bool) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", ref).Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	if dirty {
		if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			commit += "+modified"
		}
	}
	return commit
}

// buildPgcloak builds pgcloak into a temporary directory: the checkout this
// program is run from (ref ""), or commit ref of its repository, exported
// with git archive (the repository and its worktrees stay as they are).
func buildPgcloak(ctx context.Context, e *env, ref string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", module).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("find the %s checkout (run from the repository, or pass -pgcloak BINARY): %w\n%s", module, err, out)
	}
	dir := strings.TrimSpace(string(out))
	tmp := e.TempDir()
	bin := filepath.Join(tmp, "pgcloak")
	if ref != "" {
		src := filepath.Join(tmp, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			return "", err
		}
		logf("exporting %s: git archive %s | tar -x -C %s", ref, ref, src)
		archive := exec.CommandContext(ctx, "sh", "-c", `git archive --format=tar "$1" | tar -x -C "$2"`, "sh", ref, src)
		archive.Dir = dir
		if out, err := archive.CombinedOutput(); err != nil {
			return "", fmt.Errorf("git archive %s: %w\n%s", ref, err, out)
		}
		dir = src
	}
	logf("building pgcloak: go build -o %s . (in %s)", bin, dir)
	// -buildvcs=auto: stamp the commit for the report even when GOFLAGS
	// turns it off, without failing outside a repository.
	cmd := exec.CommandContext(ctx, "go", "build", "-buildvcs=auto", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}
