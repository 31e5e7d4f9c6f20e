package filestore

import (
	"testing"

	"github.com/airlock-gw/airlock/internal/store"
	"github.com/airlock-gw/airlock/internal/store/storetest"
)

func TestStore(t *testing.T) {
	for _, fsync := range []string{FsyncInterval, FsyncAlways} {
		t.Run(fsync, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, dir string) store.Store {
				s, err := Open(dir, Options{Fsync: fsync})
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}
