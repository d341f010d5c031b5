//go:build !linux

package proxy

import "time"

// inheritsKeepAlive is false where accepted connections' keepalive is not
// known to follow the listening socket's; Go then sets it per connection.
const inheritsKeepAlive = false

func listenOpts(int, time.Duration) error { return nil }
