//go:build tools

// Package tools pins the Traefik main package so the module keeps its dependencies.
package tools

import _ "github.com/traefik/traefik/v3/cmd/traefik"
