//go:build tools

// This file pins dependencies that packages under internal/ adopt
// incrementally, so that `go mod tidy` keeps them in go.mod meanwhile.
package tools

import (
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/quic-go/quic-go"
	_ "github.com/spiffe/go-spiffe/v2/workloadapi"
	_ "go.uber.org/goleak"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/crypto/cryptobyte"
	_ "golang.org/x/sync/errgroup"
)
