// Package htpasswd is the identity adapter for an Apache-style htpasswd file
// with bcrypt hashes; the file is reloaded when it changes.
package htpasswd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/broker/atomicfile"
	"github.com/tollgate/tollgate/identity"
)

// File is an htpasswd file kept in memory and reloaded when it changes on disk.
type File struct {
	path  string
	users atomic.Pointer[map[string][]byte]
	stamp atomic.Value // atomicfile.Stamp of the loaded version
	// OnReload, when set, is called after a successful reload (the broker
	// purges its credential cache so a changed password takes effect at once).
	OnReload func()
}

// Open reads the file at path. Every line must be "user:bcrypt-hash"; other
// hash kinds (MD5 "$apr1$", SHA1 "{SHA}", crypt) are refused with the line
// number, because they are weak and a half-loaded file would lock users out.
func Open(path string) (*File, error) {
	f := &File{path: path}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Parse reads htpasswd content; name is used in error messages.
func Parse(name string, data []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, found := strings.Cut(line, ":")
		if !found || user == "" {
			return nil, fmt.Errorf("%s:%d: want user:bcrypt-hash", name, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil || !isBcryptPrefix(hash) {
			return nil, fmt.Errorf("%s:%d: user %q: only bcrypt hashes are accepted (create them with `tollgate htpasswd add`)", name, n, user)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("%s:%d: user %q appears twice", name, n, user)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return users, nil
}

// Reload re-reads the file. On error the previously loaded users stay in force.
func (f *File) Reload() error {
	stamp := atomicfile.Stamp(f.path)
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("htpasswd: %w", err)
	}
	users, err := Parse(f.path, data)
	if err != nil {
		return err
	}
	f.users.Store(&users)
	f.stamp.Store(stamp)
	if f.OnReload != nil {
		f.OnReload()
	}
	return nil
}

// Watch reloads the file whenever it changes, checking every interval until
// ctx ends. A file that fails to load is logged and the last good version
// kept.
func (f *File) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	atomicfile.Poll(ctx, interval, func() {
		if atomicfile.Stamp(f.path) == f.stamp.Load().(string) {
			return
		}
		if err := f.Reload(); err != nil {
			log.Error("htpasswd reload failed; keeping the loaded users", "file", f.path, "err", err)
			return
		}
		log.Info("htpasswd reloaded", "file", f.path, "users", len(*f.users.Load()))
	})
}

// Login implements identity.PasswordConnector.
func (f *File) Login(_ context.Context, user, password string) (identity.Identity, bool, error) {
	hash, known := (*f.users.Load())[user]
	if !known {
		return identity.Identity{}, false, identity.ErrUnknownUser
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return identity.Identity{}, false, nil
	}
	return newIdentity(user), true, nil
}

// Refresh implements identity.RefreshConnector: the user must still be in the file.
func (f *File) Refresh(_ context.Context, prev identity.Identity) (identity.Identity, bool, error) {
	if _, known := (*f.users.Load())[prev.Subject]; !known {
		return identity.Identity{}, false, nil
	}
	return newIdentity(prev.Subject), true, nil
}

func newIdentity(user string) identity.Identity {
	return identity.Identity{Subject: user, Name: user, Groups: []string{}, Claims: map[string]any{}}
}

// isBcryptPrefix checks the version prefix that bcrypt.Cost lets through
// loosely: only $2a$, $2b$ and $2y$ hashes are bcrypt.
func isBcryptPrefix(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
}
