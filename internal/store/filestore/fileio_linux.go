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

// maxIOV is the most buffers one pwritev(2) takes (IOV_MAX).
const maxIOV = 1024

// pwritev writes the concatenation of bufs at off, with as few pwritev(2)s as it takes, and
// returns how many bytes it wrote.
func pwritev(f *os.File, bufs [][]byte, off int64) (int64, error) {
	var total int64
	for len(bufs) > 0 {
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		if len(bufs) == 0 {
			break
		}
		n, err := unix.Pwritev(int(f.Fd()), bufs[:min(len(bufs), maxIOV)], off)
		if n > 0 {
			total += int64(n)
			off += int64(n)
			for n > 0 { // drop what was written; a buffer written in part keeps its rest
				k := min(n, len(bufs[0]))
				bufs[0] = bufs[0][k:]
				n -= k
				if len(bufs[0]) == 0 {
					bufs = bufs[1:]
				}
			}
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, &os.PathError{Op: "pwritev", Path: f.Name(), Err: err}
		}
	}
	return total, nil
}
