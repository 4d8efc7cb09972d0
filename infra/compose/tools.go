//go:build tools

// Package tools pins the Docker Compose v2 CLI that validates compose.yaml (`docker compose config`).
package tools

import _ "github.com/docker/compose/v2/cmd"
