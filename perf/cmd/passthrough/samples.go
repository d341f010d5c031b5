package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"time"
)

// samplesHeader names writeSamples's columns: Gbit/s, connections/s,
// microseconds, CPU seconds per GiB or microseconds per connection (the
// proxy's empty on the direct path), and the busiest CPU fraction other
// processes used before a test.
var samplesHeader = []string{
	"round", "path", "down_gbps", "up_gbps", "conns_per_s",
	"rtt_p50_us", "rtt_p99_us", "ttfb_p50_us", "ttfb_p99_us",
	"proxy_cpu_s_per_gib_down", "proxy_cpu_s_per_gib_up", "proxy_cpu_us_per_conn",
	"machine_cpu_s_per_gib_down", "machine_cpu_s_per_gib_up", "machine_cpu_us_per_conn",
	"others_busy",
}

// writeSamples writes every round's sample of every path to file as CSV,
// one row per round and path, so that several runs can be pooled.
func writeSamples(file string, paths []*path, res map[string][]sample, bulkGiB float64) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(samplesHeader)
	us := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64)
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	for _, p := range paths {
		for r, s := range res[p.name] {
			proxy := []string{"", "", ""} // the direct path has no proxy
			if p.name != "direct" {
				proxy = []string{num(s.cpuDown / bulkGiB), num(s.cpuUp / bulkGiB), num(s.cpuPerConn * 1e6)}
			}
			row := []string{strconv.Itoa(r + 1), p.name, num(s.down), num(s.up), num(s.rate),
				us(s.rttP50), us(s.rttP99), us(s.ttfbP50), us(s.ttfbP99)}
			row = append(append(row, proxy...),
				num(s.sysDown/bulkGiB), num(s.sysUp/bulkGiB), num(s.sysPerConn*1e6), num(s.busy))
			_ = w.Write(row)
		}
	}
	w.Flush()
	return errors.Join(w.Error(), f.Close())
}

// readSamples reads files written by writeSamples and returns each path's
// rounds, the files' in order, with CPU figures per GiB (a sample of 1 GiB)
// and paths in the order they first appear. Rounds pair up across paths by
// position, so every file must hold the same paths, each with as many
// rounds as the others.
func readSamples(files []string) ([]*path, map[string][]sample, error) {
	var paths []*path
	res := map[string][]sample{}
	var first map[string]int // the first file's rounds per path
	for _, file := range files {
		rounds := map[string]int{}
		if err := readSampleFile(file, func(name string, s sample) {
			if _, ok := res[name]; !ok {
				paths = append(paths, &path{name: name})
			}
			res[name] = append(res[name], s)
			rounds[name]++
		}); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", file, err)
		}
		if first == nil {
			first = rounds
		}
		if !maps.Equal(rounds, first) || !sameCounts(rounds) {
			return nil, nil, fmt.Errorf("%s: rounds per path %v, want the same for every path and as in %s (%v)",
				file, rounds, files[0], first)
		}
	}
	if len(paths) == 0 {
		return nil, nil, errors.New("no samples")
	}
	return paths, res, nil
}

// sameCounts reports whether every path has as many rounds as the others.
func sameCounts(rounds map[string]int) bool {
	n := -1
	for _, c := range rounds {
		if n >= 0 && c != n {
			return false
		}
		n = c
	}
	return true
}

func readSampleFile(file string, add func(name string, s sample)) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return err
	}
	if !slices.Equal(header, samplesHeader) {
		return fmt.Errorf("header %q, want %q", header, samplesHeader)
	}
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		v := make([]float64, len(row))
		for i, cell := range row[2:] {
			if cell == "" {
				continue // the direct path's proxy CPU
			}
			if v[i+2], err = strconv.ParseFloat(cell, 64); err != nil {
				line, _ := r.FieldPos(i + 2)
				return fmt.Errorf("line %d, %s: %w", line, samplesHeader[i+2], err)
			}
		}
		us := func(x float64) time.Duration { return time.Duration(x * float64(time.Microsecond)) }
		add(row[1], sample{
			down: v[2], up: v[3], rate: v[4],
			rttP50: us(v[5]), rttP99: us(v[6]), ttfbP50: us(v[7]), ttfbP99: us(v[8]),
			cpuDown: v[9], cpuUp: v[10], cpuPerConn: v[11] / 1e6,
			sysDown: v[12], sysUp: v[13], sysPerConn: v[14] / 1e6,
			busy: v[15],
		})
	}
}

// printPooled writes the round-by-round ratios and the CPU medians of every
// round of the sample files, pooled.
func printPooled(w io.Writer, files []string) error {
	paths, res, err := readSamples(files)
	if err != nil {
		return err
	}
	// readSamples gave every path as many rounds.
	fmt.Fprintf(w, "%d rounds pooled from %d runs.\n", len(res[paths[0].name]), len(files))
	printRounds(w, paths, res)
	cpuTables(w, paths, medians(paths, res), 1)
	return nil
}
