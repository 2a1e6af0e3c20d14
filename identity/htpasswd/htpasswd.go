// Package htpasswd is the identity adapter for an Apache-style htpasswd file
// with bcrypt hashes; the file is reloaded when it changes.
package htpasswd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/atomicfile"
)

// A changed signature fails the build here, not silently in the chain.
var (
	_ identity.PasswordConnector = (*File)(nil)
	_ identity.RefreshConnector  = (*File)(nil)
	_ identity.Decoy             = (*File)(nil)
)

// File is an htpasswd file kept in memory and reloaded when it changes on disk.
type File struct {
	path  string
	table atomic.Pointer[table]
	stamp atomic.Value // atomicfile.Stamp of the loaded version
	// groupsPath is the groups file ("" for none); groups maps each user
	// to its groups, as loaded with groupsStamp.
	groupsPath  string
	groups      atomic.Pointer[map[string][]string]
	groupsStamp atomic.Value
	// OnReload, when set, is called after a successful reload of either
	// file (the broker purges its credential cache so a changed password
	// or group takes effect at once).
	OnReload func()
}

// Open reads the file at path. Every line must be "user:bcrypt-hash"; other
// hash kinds (MD5 "$apr1$", SHA1 "{SHA}", crypt) are refused with the line
// number, because they are weak and a half-loaded file would lock users out.
// Users have no groups; Config.Open adds the groups file.
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
	f.table.Store(newTable(users, data))
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
	if f.groupsPath != "" {
		go f.watchGroups(ctx, interval, log)
	}
	loaded := func() string { return f.stamp.Load().(string) }
	atomicfile.Watch(ctx, interval, f.path, loaded, f.Reload, func(err error) {
		if err != nil {
			log.Error("htpasswd reload failed; keeping the loaded users", "file", f.path, "err", err)
			return
		}
		log.Info("htpasswd reloaded", "file", f.path, "users", len(f.table.Load().users))
	})
}

// Login implements identity.PasswordConnector. An unknown name is checked
// against a stand-in hash first, so it costs what a wrong password costs.
func (f *File) Login(ctx context.Context, user, password string) (identity.Identity, bool, error) {
	if err := ctx.Err(); err != nil {
		return identity.Identity{}, false, err // nobody waits for the answer
	}
	t := f.table.Load()
	hash, known := t.users[user]
	if !known {
		t.decoy(user, password)
		return identity.Identity{}, false, identity.ErrUnknownUser
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return identity.Identity{}, false, nil
	}
	return newIdentity(user, hash, f.groupsOf(user)), true, nil
}

// Decoy implements identity.Decoy: what Login spends on an unknown name.
func (f *File) Decoy(_ context.Context, user, password string) {
	f.table.Load().decoy(user, password)
}

// Refresh implements identity.RefreshConnector: the user must still be in
// the file with the password the refresh token was issued for. A password
// set again, even to the same one, or a user removed and added again has
// a new bcrypt salt, so a new fingerprint.
func (f *File) Refresh(ctx context.Context, prev identity.Identity) (identity.Identity, bool, error) {
	if err := ctx.Err(); err != nil {
		return identity.Identity{}, false, err
	}
	hash, known := f.table.Load().users[prev.Subject]
	if !known {
		return identity.Identity{}, false, nil
	}
	id := newIdentity(prev.Subject, hash, f.groupsOf(prev.Subject))
	if err := identity.CheckCredential(ctx, prev, id.Credential); err != nil {
		return identity.Identity{}, false, err
	}
	return id, true, nil
}

// table is one loaded version of the file.
type table struct {
	users map[string][]byte
	// costs holds the bcrypt cost of every entry, in name order, and key a
	// digest of the file: decoy picks among the costs with it.
	costs []int
	key   [sha256.Size]byte
}

func newTable(users map[string][]byte, data []byte) *table {
	t := &table{users: users, key: sha256.Sum256(data)}
	for _, name := range slices.Sorted(maps.Keys(users)) {
		cost, _ := bcrypt.Cost(users[name]) // Parse checked it
		t.costs = append(t.costs, cost)
	}
	return t
}

// standInHash is a bcrypt hash's salt and checksum that no password matches
// (a zero checksum); with a cost in front it costs what an entry of that cost
// costs to check.
const standInHash = "......................" + // 22 characters of salt
	"..............................." // 31 of checksum

// decoy checks password against a stand-in hash with the cost of one of the
// file's entries, and ignores the answer.
//
// Which cost: no single one hides every entry of a file that mixes costs.
// With entries of cost 5 (`htpasswd -B`, 3.5 ms) and 12 (290 ms), a cost 12
// stand-in gives the cost 5 users away, and a cost 5 one the cost 12 users.
// So an unknown name is made to look like one more entry: an HMAC of the name
// picks the entry whose cost it gets. Unknown names then cost what entries do,
// in the same proportions, and one name always costs the same, as a user
// does. The key, a digest of the file, is secret to whoever cannot read the
// (salted) file and the same on every replica serving it, so replicas behind
// one address agree; an edit of a mixed-cost file re-picks the costs of
// unknown names. An empty file has no user to hide and checks nothing.
func (t *table) decoy(user, password string) {
	if cost := t.decoyCost(user); cost > 0 {
		_ = bcrypt.CompareHashAndPassword(fmt.Appendf(nil, "$2a$%02d$%s", cost, standInHash), []byte(password))
	}
}

// decoyCost is the cost decoy spends on user; 0 for an empty file.
func (t *table) decoyCost(user string) int {
	if len(t.costs) == 0 {
		return 0
	}
	m := hmac.New(sha256.New, t.key[:])
	m.Write([]byte(user))
	return t.costs[binary.BigEndian.Uint64(m.Sum(nil))%uint64(len(t.costs))]
}

// newIdentity is user's identity, its credential the fingerprint of the
// stored bcrypt hash: a hash of a salted hash, which neither verifies a
// password guess nor leads back to one. Groups are not part of it: a
// refresh token outlives a change of groups and gets the new ones.
func newIdentity(user string, hash []byte, groups []string) identity.Identity {
	return identity.Identity{Subject: user, Name: user, Groups: groups, Claims: map[string]any{},
		Credential: identity.Fingerprint([]byte(user), hash)}
}

// isBcryptPrefix checks the version prefix that bcrypt.Cost lets through
// loosely: only $2a$, $2b$ and $2y$ hashes are bcrypt.
func isBcryptPrefix(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
}
