// Package atomicfile replaces files so that a reader never sees half of
// one, serialises the read-modify-write cycles of concurrent editors (the
// `tollgate htpasswd`, `robot` and `token revoke` commands) with an
// advisory lock so no update is lost, and lets the broker notice cheaply
// that a file it loaded has changed.
package atomicfile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Write replaces path with data through a temporary file in the same
// directory and a rename. A new file gets mode perm; a replaced one keeps
// its mode, owner and group, so that a file an administrator made readable
// by a service's group (docs/operations.md, systemd) stays so after root
// edits it.
func Write(path string, data []byte, perm fs.FileMode) error {
	var owner *syscall.Stat_t
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
		owner, _ = fi.Sys().(*syscall.Stat_t)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	// Only root may give a file away: anyone else keeps owning what they
	// write, as before.
	if owner != nil {
		if err := tmp.Chown(int(owner.Uid), int(owner.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// Edit runs change on the current content of path (nil when the file does
// not exist) under an exclusive lock on path+".lock", and writes what it
// returns with Write. An error from change leaves the file as it was.
func Edit(path string, perm fs.FileMode, change func(old []byte) ([]byte, error)) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// O_NOFOLLOW: a link left in place of the lock must not make us create
	// the file it points to.
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	data, err := change(old)
	if err != nil {
		return err
	}
	return Write(path, data, perm)
}

// Stamp summarises what a poller needs to tell that files changed: for each
// path, the size and modification time of a file, or the names, sizes and
// times of every file below a directory; "-" for a path that does not exist.
func Stamp(paths ...string) string {
	h := sha256.New()
	for _, p := range paths {
		st, err := os.Stat(p)
		switch {
		case err != nil:
			h.Write([]byte("-"))
		case !st.IsDir():
			fmt.Fprintf(h, "%d/%d", st.Size(), st.ModTime().UnixNano())
		default:
			_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return nil
				}
				if info, err := d.Info(); err == nil {
					fmt.Fprintf(h, "%s\x00%d\x00%d\n", q, info.Size(), info.ModTime().UnixNano())
				}
				return nil
			})
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Poll runs check every interval until ctx ends: the loop of every file
// watcher (htpasswd, robots, revocations, the policy directory, the
// configuration), each of which compares a Stamp with the one it loaded.
func Poll(ctx context.Context, interval time.Duration, check func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}

// Watch reloads a file whenever it changes: every interval until ctx ends,
// when the Stamp of path differs from loaded() (the stamp of the version in
// memory), it calls reload, and then done with reload's error. A failed
// reload keeps what was loaded; the caller says so in done.
func Watch(ctx context.Context, interval time.Duration, path string, loaded func() string, reload func() error, done func(error)) {
	Poll(ctx, interval, func() {
		if Stamp(path) != loaded() {
			done(reload())
		}
	})
}

// CheckWritableDir reports whether Edit could write a file in dir: dir (or,
// when it does not exist yet, the directory Edit would create it in) takes
// a new file. The probe file is removed again.
func CheckWritableDir(dir string) error {
	probeIn := dir
	for {
		if _, err := os.Stat(probeIn); !errors.Is(err, fs.ErrNotExist) {
			break
		}
		parent := filepath.Dir(probeIn)
		if parent == probeIn {
			break
		}
		probeIn = parent
	}
	f, err := os.CreateTemp(probeIn, ".tollgate-probe-*")
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err // the probe's random name says nothing
	}
	if err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
