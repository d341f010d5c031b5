// Package perf holds ewgw's benchmarks: the passthrough comparison with the
// direct path, HAProxy and nginx (cmd/passthrough, "make bench"), and
// in-process go test benchmarks of the proxy package (passthrough_test.go).
package perf
