package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// HostileBundle is a gzipped tarball past the default bundle limits
// (64 MiB, 10,000 files), with the limit an error refusing it names.
type HostileBundle struct {
	Name string
	Data []byte
	Want string // "bytes uncompressed" or "files"
}

// HostileBundles are the bombs every bundle path (tollgate's poller and
// OPA's downloaders) must refuse; each file is under the 64 MiB a single
// file may have, so OPA's own size_limit_bytes does not stop them.
func HostileBundles(t testing.TB) []HostileBundle {
	return []HostileBundle{
		{"96 MiB of zeros", Bomb(t, 2, 48), "bytes uncompressed"},
		{"10001 empty files", Bomb(t, 10_001, 0), "files"},
	}
}

// Bomb is a gzipped tarball of n zero-filled files of mib MiB each. It is
// made of gzip members, which gzip readers join: the tar headers, and one
// MiB of zeros compressed once (to about 1 KiB) and repeated, so that even
// under -race it takes milliseconds to make.
func Bomb(t testing.TB, n, mib int) []byte {
	t.Helper()
	gz := func(w io.Writer, data []byte) {
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var zeroMiB, out, pending bytes.Buffer
	gz(&zeroMiB, make([]byte, 1<<20))
	flush := func() {
		if pending.Len() > 0 {
			gz(&out, pending.Bytes())
			pending.Reset()
		}
	}
	for i := range n {
		// A tar.Writer of its own writes the header only: the content
		// follows as compressed zeros, never written through it.
		h := &tar.Header{Name: fmt.Sprintf("/z/%d.bin", i), Mode: 0o644, Size: int64(mib) << 20}
		if err := tar.NewWriter(&pending).WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		for range mib {
			flush()
			out.Write(zeroMiB.Bytes())
		}
	}
	pending.Write(make([]byte, 1024)) // the end of the archive
	flush()
	return out.Bytes()
}

// HeapGrowth returns how far the heap (its objects, live or not yet
// collected) grew above its level before fn, sampled while fn ran. Bytes
// allocated in total would overstate it: under -race, sync.Pool keeps
// nothing and io.Discard allocates a buffer on every copy.
func HeapGrowth(fn func()) uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	runtime.GC()
	base := read()
	peak := base
	done, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Microsecond):
				peak = max(peak, read())
			}
		}
	}()
	fn()
	close(done)
	<-sampled
	return max(peak, read()) - base
}
