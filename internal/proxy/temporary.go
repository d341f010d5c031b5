package proxy

import (
	"errors"
	"syscall"
)

// isTemporary reports accept errors worth retrying: running out of file
// descriptors or kernel buffers, or a connection aborted before accept.
func isTemporary(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
