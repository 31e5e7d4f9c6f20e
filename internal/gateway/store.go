package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/airlock-gw/airlock/internal/config"
	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/filestore"
	"github.com/airlock-gw/airlock/internal/store/postgres"
)

// storeOpenTimeout bounds connecting to (and migrating) a PostgreSQL store at start: a gateway
// that cannot reach its store should say so, not hang.
const storeOpenTimeout = 30 * time.Second

// openStore opens the store cfg.Store names: the embedded store in data_dir by default, or
// PostgreSQL for a postgres:// URL. Errors never quote the URL, which may hold a password.
func openStore(cfg *config.Config) (store.Store, error) {
	switch {
	case cfg.Store == "" || cfg.Store == "file":
		st, err := filestore.Open(cfg.DataDir, filestore.Options{Fsync: cfg.Recording.Fsync, FsyncInterval: cfg.Recording.FsyncInterval})
		if err != nil {
			return nil, fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
		}
		return st, nil
	case strings.HasPrefix(cfg.Store, "postgres://") || strings.HasPrefix(cfg.Store, "postgresql://"):
		ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
		defer cancel()
		st, err := postgres.Open(ctx, cfg.Store, postgres.Options{})
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL store: %w", err)
		}
		return st, nil
	default:
		return nil, errors.New(`store must be "file" or a postgres:// URL`)
	}
}
