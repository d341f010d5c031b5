// Package bench holds what the perf programs share: the Go TLS backend run as
// a child process, the client-side measurements (bulk transfer, connection
// rate, time to first byte, warm round trips), and the process and machine
// accounting (CPU time from /proc, waiting for a quiet machine, pprof
// fetches). cmd/passthrough and cmd/tunnel use the same code, so their
// numbers compare.
package bench
