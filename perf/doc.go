// Package perf holds ewgw's benchmarks: the passthrough comparison with the
// direct path, HAProxy and nginx (cmd/passthrough, "make bench"), the
// tunnel against direct on loopback (cmd/tunnel), the comparison across an
// emulated WAN link (cmd/wan and the emulator in wan, "make bench-wan"),
// and in-process go test benchmarks of the proxy package
// (passthrough_test.go).
package perf
