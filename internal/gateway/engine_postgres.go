package gateway

import _ "github.com/airlock-gw/airlock/internal/engine/postgres" // registers the postgres engine
