package filestore

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache tells the kernel that the recording's bytes in [off, off+n), already fsynced, will
// not be read soon: their page-cache pages are freed at once (see writer.dropSynced).
func dropCache(f *os.File, off, n int64) {
	// Advice only: an error changes nothing about what is durable, so it is ignored.
	_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
}
