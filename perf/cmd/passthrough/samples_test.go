package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two runs' sample files pool into one run of all their rounds, with the
// CPU figures per GiB.
func TestSamplesPool(t *testing.T) {
	dir := t.TempDir()
	paths := []*path{{name: "direct"}, {name: "ewgw"}}
	run := func(file string, direct, ewgw []float64) string {
		res := map[string][]sample{}
		for i := range direct {
			res["direct"] = append(res["direct"], sample{down: direct[i], up: direct[i], rate: 1000, sysDown: 3.2})
			res["ewgw"] = append(res["ewgw"], sample{down: ewgw[i], up: ewgw[i] / 2, rate: 900,
				rttP50: 150 * time.Microsecond, cpuDown: 0.6, cpuPerConn: 170e-6})
		}
		f := filepath.Join(dir, file)
		if err := writeSamples(f, paths, res, 2); err != nil {
			t.Fatal(err)
		}
		return f
	}
	a := run("a.csv", []float64{10, 10, 10}, []float64{9, 8, 10})
	b := run("b.csv", []float64{10, 10, 10}, []float64{7, 11, 9.5})

	got, res, err := readSamples([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].name != "direct" || got[1].name != "ewgw" {
		t.Fatalf("paths %v", got)
	}
	if n := len(res["ewgw"]); n != 6 {
		t.Fatalf("%d ewgw rounds, want 6", n)
	}
	s := res["ewgw"][3]
	want := sample{down: 7, up: 3.5, rate: 900, rttP50: 150 * time.Microsecond, cpuDown: 0.3, cpuPerConn: 170e-6}
	if s != want {
		t.Errorf("round 4 of ewgw read back as %+v, want %+v", s, want)
	}
	if d := res["direct"][0].sysDown; d != 1.6 {
		t.Errorf("direct's machine CPU per GiB read back as %v, want 1.6", d)
	}

	var out bytes.Buffer
	if err := printPooled(&out, []string{a, b}); err != nil {
		t.Fatal(err)
	}
	// Ratios 0.7, 0.8, 0.9, 0.95, 1.0, 1.1: median 0.925, four of six at
	// or above 0.9, and six rounds give the widest 95 % interval.
	for _, line := range []string{
		"6 rounds pooled from 2 runs.",
		"| ewgw | direct | 0.93× [0.70–1.10] (0.70–1.10), 4/6 |",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("pooled report lacks %q:\n%s", line, out.String())
		}
	}
}

func TestSamplesRejectsOtherFiles(t *testing.T) {
	f := filepath.Join(t.TempDir(), "x.csv")
	if err := os.WriteFile(f, []byte("round,path,down\n1,ewgw,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readSamples([]string{f}); err == nil || !strings.Contains(err.Error(), "header") {
		t.Errorf("readSamples of a foreign CSV: %v, want a header error", err)
	}
}

func TestSamplesReportsBadCell(t *testing.T) {
	f := filepath.Join(t.TempDir(), "x.csv")
	rows := strings.Join(samplesHeader, ",") + "\n" +
		"1,ewgw,9,8,900,0,0,0,0,0.3,0.3,170,1.6,1.6,1000,0.01\n" +
		"2,ewgw,9,fast,900,0,0,0,0,0.3,0.3,170,1.6,1.6,1000,0.01\n"
	if err := os.WriteFile(f, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := readSamples([]string{f})
	if err == nil || !strings.Contains(err.Error(), "line 3, up_gbps") {
		t.Errorf("readSamples with a bad cell: %v, want line 3, up_gbps", err)
	}
}

// Rounds pair up by position, so files with other paths or round counts
// cannot pool.
func TestSamplesRejectsMismatchedRuns(t *testing.T) {
	dir := t.TempDir()
	write := func(file string, rows ...string) string {
		f := filepath.Join(dir, file)
		body := strings.Join(samplesHeader, ",") + "\n" + strings.Join(rows, "\n") + "\n"
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	row := func(r int, path string) string {
		return fmt.Sprintf("%d,%s,9,8,900,0,0,0,0,0.3,0.3,170,1.6,1.6,1000,0.01", r, path)
	}
	a := write("a.csv", row(1, "direct"), row(1, "ewgw"))
	for _, c := range []struct {
		name string
		file string
	}{
		{"another path", write("b.csv", row(1, "direct"), row(1, "ewgw"), row(1, "haproxy"))},
		{"a path missing", write("c.csv", row(1, "direct"))},
		{"uneven rounds", write("d.csv", row(1, "direct"), row(2, "direct"), row(1, "ewgw"))},
	} {
		if _, _, err := readSamples([]string{a, c.file}); err == nil || !strings.Contains(err.Error(), "rounds per path") {
			t.Errorf("%s: %v, want a rounds-per-path error", c.name, err)
		}
	}
	if _, _, err := readSamples([]string{write("e.csv", row(1, "direct"), row(2, "direct"), row(1, "ewgw"))}); err == nil {
		t.Error("a lone file with uneven rounds pooled")
	}
	if _, res, err := readSamples([]string{a, a}); err != nil || len(res["ewgw"]) != 2 {
		t.Errorf("two like files: %v, %d ewgw rounds; want 2", err, len(res["ewgw"]))
	}
}
