package gateway

import _ "github.com/airlock-gw/airlock/internal/engine/kubernetes" // registers the kubernetes engine
