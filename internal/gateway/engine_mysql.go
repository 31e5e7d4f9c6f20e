package gateway

import _ "github.com/airlock-gw/airlock/internal/engine/mysql" // registers the mysql engine
