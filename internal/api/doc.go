// Package api serves the gateway's REST API under /api/v1, plus /healthz and /metrics.
package api
