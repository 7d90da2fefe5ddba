//go:build tools

// Package tools pins the Prometheus main package so `go mod tidy` keeps its dependencies.
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
