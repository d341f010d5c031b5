package tunnel

import (
	"fmt"
	"io"
)

// statusLen is the size of a status frame: a version byte and a code byte.
const statusLen = 2

// appendStatus appends the status frame the receiver writes before any byte
// of the server's reply: CodeOK to accept, anything else to refuse. A refusal
// is followed by a stream reset carrying the same code, so an opener that
// sees the reset before the frame learns the same thing.
func appendStatus(b []byte, c ErrorCode) []byte {
	return append(b, HeaderVersion, byte(c))
}

// readStatus reads a status frame.
func readStatus(r io.Reader) (ErrorCode, error) {
	var b [statusLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	if b[0] != HeaderVersion {
		return 0, fmt.Errorf("%w: status version %d", ErrUnsupportedVersion, b[0])
	}
	return ErrorCode(b[1]), nil
}
