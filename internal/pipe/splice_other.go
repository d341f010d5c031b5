//go:build !linux

package pipe

import (
	"io"
	"net"
)

// newRawTCP is Linux-only; elsewhere the connection's own methods serve.
func newRawTCP(c *net.TCPConn) (io.ReadWriter, bool) { return nil, false }

// spliceRaw is Linux-only; elsewhere io.Copy picks the platform's best copy.
func spliceRaw(dst, src io.ReadWriter) (written int64, handled bool, err error) {
	return 0, false, nil
}
