//go:build tools

// Package tools pins developer tools (golangci-lint) apart from the main
// module, so their dependencies never mix with the gateway's.
package tools

import _ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
