package gateway

import _ "github.com/airlock-gw/airlock/internal/engine/ssh" // registers the ssh engine
