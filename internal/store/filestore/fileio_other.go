//go:build !linux

package filestore

import "os"

// dropCache is a no-op where posix_fadvise is not wired up; the page cache then keeps
// recordings until memory pressure evicts them.
func dropCache(f *os.File, off, n int64) {}

// pwritev writes the concatenation of bufs at off (one WriteAt of a joined copy).
func pwritev(f *os.File, bufs [][]byte, off int64) (int64, error) {
	var b []byte
	for _, x := range bufs {
		b = append(b, x...)
	}
	n, err := f.WriteAt(b, off)
	return int64(n), err
}
