package gateway

import (
	"os"
	"testing"
)

// TestMain stops the kube-apiservers the tests started once all ran.
func TestMain(m *testing.M) {
	code := m.Run()
	stopApiservers()
	os.Exit(code)
}
