// Package robot holds robot accounts: scoped, expiring, rotatable and
// revocable credentials for CI systems. The store is a JSON file that the
// `tollgate robot` commands edit and the broker reloads when it changes.
// Secrets are never stored: only their SHA-256, which is safe for secrets
// of 260 random bits (there is nothing to brute-force).
package robot

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/atomicfile"
	"github.com/tollgate/tollgate/scope"
)

// UserPrefix starts the user name of every robot, so robots never collide
// with people and the chain can tell them apart without a lookup.
const UserPrefix = "robot-"

// validName allows only characters that are safe unquoted in shells, CI
// variables and URLs: no `$`, no spaces, no quotes.
var validName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

// Record is one robot as stored.
type Record struct {
	Name        string     `json:"name"`
	Scopes      []string   `json:"scopes"`
	Service     string     `json:"service,omitempty"`
	Description string     `json:"description,omitempty"`
	Created     time.Time  `json:"created"`
	Rotated     time.Time  `json:"rotated"`
	Expires     *time.Time `json:"expires,omitempty"` // nil: never
	Revoked     *time.Time `json:"revoked,omitempty"`
	SecretHash  string     `json:"secret_hash"`
}

// User is the robot's user name: robot-NAME.
func (r *Record) User() string { return UserPrefix + r.Name }

// Status is "active", "expired" or "revoked" at now.
func (r *Record) Status(now time.Time) string {
	switch {
	case r.Revoked != nil:
		return "revoked"
	case r.Expires != nil && !now.Before(*r.Expires):
		return "expired"
	}
	return "active"
}

// file is the store's format.
type file struct {
	Version int      `json:"version"`
	Robots  []Record `json:"robots"`
}

const formatVersion = 1

// NormalizeName accepts NAME or robot-NAME and checks it.
func NormalizeName(name string) (string, error) {
	name = strings.TrimPrefix(name, UserPrefix)
	if !validName.MatchString(name) {
		return "", fmt.Errorf("robot name %q: use 1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit (names must be safe in shells and CI variables)", name)
	}
	return name, nil
}

// ParseScopes checks robot scopes: type:name:actions, the name may hold
// globs (`team/*`, `team/**`).
func ParseScopes(values []string) ([]scope.Scope, error) {
	if len(values) == 0 {
		return nil, errors.New("a robot needs at least one --scope")
	}
	out := make([]scope.Scope, 0, len(values))
	for _, v := range values {
		ss, err := scope.Parse([]string{v})
		if err != nil || len(ss) != 1 || len(ss[0].Actions) == 0 {
			return nil, fmt.Errorf("robot scope %q: want type:name:actions, for example repository:team/*:pull,push", v)
		}
		if slices.Contains(ss[0].Actions, "*") {
			return nil, fmt.Errorf("robot scope %q: name the actions (pull, push, delete); a robot never gets *", v)
		}
		out = append(out, ss[0])
	}
	return out, nil
}

// newSecret returns a secret of 260 random bits in base32 (letters and
// digits only: shell-safe) and its stored hash.
func newSecret() (secret, hash string) {
	secret = rand.Text() + rand.Text()
	return secret, hashSecret(secret)
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// read loads the store; a missing file is an empty store.
func read(path string) (*file, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return parse(path, data)
}

// parse checks a store's content; nil content is an empty store.
func parse(path string, data []byte) (*file, error) {
	if data == nil {
		return &file{Version: formatVersion}, nil
	}
	var f file
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("robot store %s: %w", path, err)
	}
	if f.Version != formatVersion {
		return nil, fmt.Errorf("robot store %s: version %d, want %d", path, f.Version, formatVersion)
	}
	seen := map[string]bool{}
	for _, r := range f.Robots {
		if _, err := NormalizeName(r.Name); err != nil {
			return nil, fmt.Errorf("robot store %s: %w", path, err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("robot store %s: robot %q appears twice", path, r.Name)
		}
		seen[r.Name] = true
		if _, err := ParseScopes(r.Scopes); err != nil {
			return nil, fmt.Errorf("robot store %s: robot %q: %w", path, r.Name, err)
		}
		if !strings.HasPrefix(r.SecretHash, "sha256:") || len(r.SecretHash) != len("sha256:")+64 {
			return nil, fmt.Errorf("robot store %s: robot %q: bad secret_hash", path, r.Name)
		}
	}
	return &f, nil
}

// edit applies change to the store under an exclusive lock and writes it
// atomically, so concurrent commands never lose an update and the broker
// never reads half a file.
func edit(path string, change func(f *file) error) error {
	return atomicfile.Edit(path, 0o600, func(old []byte) ([]byte, error) {
		f, err := parse(path, old)
		if err != nil {
			return nil, err
		}
		if err := change(f); err != nil {
			return nil, err
		}
		data, err := json.MarshalIndent(f, "", "  ")
		return append(data, '\n'), err
	})
}

// CreateOptions describe a new robot.
type CreateOptions struct {
	Name, Service, Description string
	Scopes                     []string
	// TTL is the lifetime; 0 means the robot never expires.
	TTL time.Duration
	Now time.Time
}

// Create adds a robot and returns it with its secret, which is shown once.
func Create(path string, o CreateOptions) (Record, string, error) {
	name, err := NormalizeName(o.Name)
	if err != nil {
		return Record{}, "", err
	}
	if _, err := ParseScopes(o.Scopes); err != nil {
		return Record{}, "", err
	}
	secret, hash := newSecret()
	now := o.Now.UTC().Truncate(time.Second)
	r := Record{Name: name, Scopes: slices.Clone(o.Scopes), Service: o.Service, Description: o.Description,
		Created: now, Rotated: now, SecretHash: hash}
	if o.TTL > 0 {
		exp := now.Add(o.TTL)
		r.Expires = &exp
	}
	err = edit(path, func(f *file) error {
		for _, old := range f.Robots {
			if old.Name == name {
				return fmt.Errorf("robot %q exists (%s): rotate or revoke it", name, old.Status(now))
			}
		}
		f.Robots = append(f.Robots, r)
		return nil
	})
	return r, secret, err
}

// Rotate gives a robot a new secret; the old one stops working at the
// broker's next reload. The expiry changes only when ttl is not nil (then
// it restarts from now; a zero ttl means never).
func Rotate(path, name string, ttl *time.Duration, now time.Time) (Record, string, error) {
	name, err := NormalizeName(name)
	if err != nil {
		return Record{}, "", err
	}
	secret, hash := newSecret()
	now = now.UTC().Truncate(time.Second)
	var out Record
	err = edit(path, func(f *file) error {
		r := find(f, name)
		if r == nil {
			return fmt.Errorf("no robot %q", name)
		}
		if r.Revoked != nil {
			return fmt.Errorf("robot %q was revoked: create a new one", name)
		}
		r.SecretHash, r.Rotated = hash, now
		if ttl != nil {
			r.Expires = nil
			if *ttl > 0 {
				exp := now.Add(*ttl)
				r.Expires = &exp
			}
		}
		out = *r
		return nil
	})
	return out, secret, err
}

// Revoke stops a robot for good; its record stays for the audit trail.
func Revoke(path, name string, now time.Time) error {
	name, err := NormalizeName(name)
	if err != nil {
		return err
	}
	return edit(path, func(f *file) error {
		r := find(f, name)
		if r == nil {
			return fmt.Errorf("no robot %q", name)
		}
		if r.Revoked == nil {
			t := now.UTC().Truncate(time.Second)
			r.Revoked = &t
		}
		return nil
	})
}

// List returns every robot, by name.
func List(path string) ([]Record, error) {
	f, err := read(path)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(f.Robots, func(a, b Record) int { return strings.Compare(a.Name, b.Name) })
	return f.Robots, nil
}

func find(f *file, name string) *Record {
	for i := range f.Robots {
		if f.Robots[i].Name == name {
			return &f.Robots[i]
		}
	}
	return nil
}
