//go:build !linux

package tunnel

import "net"

// tcpPath knows nothing of the path outside Linux.
func tcpPath(net.Conn) (pathStats, bool) { return pathStats{}, false }

// setCongestion leaves the congestion control alone outside Linux.
func setCongestion(net.Conn, string) error { return nil }
