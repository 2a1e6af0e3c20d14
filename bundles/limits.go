package bundles

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
)

// Limits bound what reading one bundle tarball may cost. OPA limits only
// the size of each file, and its tarball loader reads every file into
// memory before a signature is verified, so without them a gzip bomb of a
// few hundred kilobytes, signed or not, expands to gigabytes.
type Limits struct {
	// MaxBytes bounds the bundle's size: downloaded (compressed), and
	// uncompressed (the tar stream, and the sum of its files' sizes).
	MaxBytes int64
	// MaxFiles bounds the number of entries in the tarball.
	MaxFiles int
}

// The limits that apply where a Limits field is zero.
const (
	DefaultMaxBytes = 64 << 20
	DefaultMaxFiles = 10_000
)

func (l Limits) orDefaults() Limits {
	return Limits{MaxBytes: cmp.Or(l.MaxBytes, DefaultMaxBytes), MaxFiles: cmp.Or(l.MaxFiles, DefaultMaxFiles)}
}

// limitError says which limit a refused bundle exceeds. A bundle refused
// for its size is a verdict on that version, not a failure to fetch it.
type limitError struct {
	what  string
	limit int64
}

func (e *limitError) Error() string {
	return fmt.Sprintf("bundle exceeds its limit: more than %d %s", e.limit, e.what)
}

func isLimit(err error) bool {
	var le *limitError
	return errors.As(err, &le)
}

// readAtMost reads r whole, refusing more than limit bytes (size is what
// the sender announced, -1 when unknown).
func readAtMost(r io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, &limitError{"bytes compressed", limit}
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &limitError{"bytes compressed", limit}
	}
	return data, nil
}

// check reads a gzipped tarball through, keeping nothing of its contents,
// and refuses it at the first byte or entry past the limits, so a bomb is
// never expanded in memory and OPA, which reads whole files, is only given
// a bundle that fits. It counts the decompressed tar stream and the sizes
// the headers declare (a sparse file's size exceeds what it stores).
func (l Limits) check(tarball []byte) error {
	zr, err := gzip.NewReader(bytes.NewReader(tarball))
	if err != nil {
		return fmt.Errorf("archive read failed: %w", err)
	}
	stream := &capped{r: zr, left: l.MaxBytes}
	tr := tar.NewReader(stream)
	var size int64
	for files := 0; ; files++ {
		h, err := tr.Next()
		switch {
		case stream.over:
			return &limitError{"bytes uncompressed", l.MaxBytes}
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("archive read failed: %w", err)
		case files >= l.MaxFiles:
			return &limitError{"files", int64(l.MaxFiles)}
		}
		if size += max(h.Size, 0); size > l.MaxBytes {
			return &limitError{"bytes uncompressed", l.MaxBytes}
		}
	}
}

// capped reads r until more than left bytes were asked of it.
type capped struct {
	r    io.Reader
	left int64
	over bool
}

var errCapped = errors.New("over the size limit")

func (c *capped) Read(p []byte) (int, error) {
	if c.left < 0 {
		c.over = true
		return 0, errCapped
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		c.over = true
		return n, errCapped
	}
	return n, err
}

// CheckFile refuses a bundle tarball at path past the limits, reading it
// as a download is read, for OPA's file:// bundles, which OPA reads whole.
// A directory is left to OPA's per-file limit, as policy.source leaves it.
func (l Limits) CheckFile(path string) error {
	l = l.orDefaults()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		return err
	}
	data, err := readAtMost(f, st.Size(), l.MaxBytes)
	if err != nil {
		return err
	}
	return l.check(data)
}
