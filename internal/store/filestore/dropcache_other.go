//go:build !linux

package filestore

import "os"

// dropCache is a no-op where posix_fadvise is not wired up; the page cache then keeps
// recordings until memory pressure evicts them.
func dropCache(f *os.File, off, n int64) {}
