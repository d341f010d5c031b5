package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestPrometheusRule checks the shipped alert rules with promtool (Debian's
// prometheus package; `make deps` installs it): `check rules` on the
// PrometheusRule's spec, and `test rules` with monitoring/rules_test.yml,
// which fires each alert on the series it is meant for and no other.
func TestPrometheusRule(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: run `make deps` (Debian package prometheus) to check deploy/monitoring's rules")
	}
	raw, err := os.ReadFile("monitoring/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Kind string         `json:"kind"`
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil {
		t.Fatal(err)
	}
	if rule.Kind != "PrometheusRule" || rule.Spec["groups"] == nil {
		t.Fatalf("monitoring/prometheusrule.yaml: kind %q, spec %v", rule.Kind, rule.Spec)
	}
	spec, err := yaml.Marshal(rule.Spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests, err := os.ReadFile("monitoring/rules_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"ewgw.rules.yml": spec, "rules_test.yml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"check", "rules", "ewgw.rules.yml"}, {"test", "rules", "rules_test.yml"}} {
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
