//go:build !linux

package tunnel

import "net"

// tcpPath knows nothing of the path outside Linux.
func tcpPath(net.Conn) (pathStats, bool) { return pathStats{}, false }

// tuneTCP leaves the congestion control alone outside Linux.
func tuneTCP(net.Conn) bool { return false }
