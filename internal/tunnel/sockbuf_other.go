//go:build !linux

package tunnel

import "net"

// checkBuffers is a no-op outside Linux, where socket buffer sizes read back
// differently; quic-go logs its own warning there.
func (t *Tunnel) checkBuffers(net.PacketConn, string) {}
