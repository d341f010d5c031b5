package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// TestBuildGODEBUGReachesRuntime checks the runtime settings `make build`
// links into bin/ewgw (the Makefile's RUNTIME_GODEBUG). The link flag is the
// go command's own mechanism for a binary's GODEBUG defaults, but nothing
// documents it for runtime settings outside the //go:debug list, and if a Go
// release renamed the variable, -X would set nothing and say nothing. So a
// probe linked the same way must show schedtrace in effect: a program that
// panics prints the scheduler's state first only when schedtrace is set. The
// same probe linked without it is the control.
func TestBuildGODEBUGReachesRuntime(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make on PATH")
	}
	out, err := exec.Command("make", "-s", "-C", filepath.Join("..", ".."), "godebug-default").Output()
	if err != nil {
		t.Fatalf("make godebug-default: %v", err)
	}
	defaults := strings.TrimSpace(string(out))
	if !slices.ContainsFunc(strings.Split(defaults, ","), func(s string) bool {
		return strings.HasPrefix(s, "schedtrace=") && s != "schedtrace=0"
	}) {
		t.Fatalf("make godebug-default = %q, want a non-zero schedtrace", defaults)
	}

	dir := t.TempDir()
	write(t, filepath.Join(dir, "go.mod"), "module probe\n\ngo 1.26\n")
	write(t, filepath.Join(dir, "main.go"), "package main\n\nfunc main() { panic(\"probe\") }\n")
	if got := runProbe(t, dir, "-X=runtime.godebugDefault="+defaults); !strings.Contains(got, "SCHED ") {
		t.Errorf("probe linked with %q: no scheduler state before the panic, so schedtrace did not reach the runtime:\n%s", defaults, got)
	}
	if got := runProbe(t, dir, ""); strings.Contains(got, "SCHED ") {
		t.Errorf("control probe printed the scheduler state without schedtrace:\n%s", got)
	}
}

// runProbe builds the program in dir with ldflags, runs it without a GODEBUG
// environment variable, and returns what it printed, which must include its
// panic.
func runProbe(t *testing.T, dir, ldflags string) string {
	t.Helper()
	exe := filepath.Join(dir, "probe")
	args := []string{"build", "-o", exe, "-ldflags=" + ldflags}
	// Build as this test was built, so a race run reuses its cached packages.
	if bi, ok := debug.ReadBuildInfo(); ok && slices.Contains(bi.Settings, debug.BuildSetting{Key: "-race", Value: "true"}) {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	run := exec.Command(exe)
	run.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(string(out), "panic: probe") {
		t.Fatalf("probe (ldflags %q): want a panic exit, got %v:\n%s", ldflags, err, out)
	}
	return string(out)
}
