// Package credhelper is the client side's credential store: the file that
// keeps each registry's identity token, the docker credential-helper
// protocol that hands it to docker, podman, skopeo, crane and oras, and the
// credHelpers entry of the docker config that sends them to it.
package credhelper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/tollgate/tollgate/internal/atomicfile"
)

// IdentityTokenUser is the user name by which the docker convention marks
// the secret as an identity token (an OAuth2 refresh token) rather than a
// password: clients then use the refresh grant with it.
const IdentityTokenUser = "<token>"

// Credential is what the store keeps for one registry host.
type Credential struct {
	Username string `json:"username"`
	Secret   string `json:"secret"`
	// Realm is the broker's token endpoint the secret was issued by, so
	// logout reaches it without asking the registry. Empty when the
	// credential came through the helper protocol's store.
	Realm     string `json:"realm,omitempty"`
	Service   string `json:"service,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	Subject   string `json:"subject,omitempty"`
}

// String never shows the secret, so a credential printed by mistake leaks
// nothing.
func (c Credential) String() string {
	return fmt.Sprintf("credential of %s (session %s)", c.Subject, c.SessionID)
}

// Store is the helper's own file, 0600 in a 0700 directory of the user.
type Store struct {
	Path string
}

type storeFile struct {
	Credentials map[string]Credential `json:"credentials"`
}

// ErrNotFound is the protocol's "no credential for this server".
var ErrNotFound = errors.New("credentials not found in native keychain")

// DefaultStore is $XDG_CONFIG_HOME/tollgate/credentials.json, or
// ~/.config/tollgate/credentials.json.
func DefaultStore() (*Store, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("find the credential store: %w", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return &Store{Path: filepath.Join(dir, "tollgate", "credentials.json")}, nil
}

// Host reduces what clients pass as a server URL (a host, a host:port,
// https://host/v1/, ...) to the lower-case host[:port] the store is keyed by.
func Host(serverURL string) (string, error) {
	s := strings.TrimSpace(serverURL)
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", errors.New("the server URL is not a URL")
		}
		s = u.Host
	} else {
		s, _, _ = strings.Cut(s, "/")
	}
	if s == "" {
		return "", errors.New("no credentials server URL")
	}
	return strings.ToLower(s), nil
}

// Get returns the credential of host, or ErrNotFound.
func (s *Store) Get(host string) (Credential, error) {
	f, err := s.read()
	if err != nil {
		return Credential{}, err
	}
	c, ok := f.Credentials[host]
	if !ok {
		return Credential{}, ErrNotFound
	}
	return c, nil
}

// List maps each host with a credential to its user name.
func (s *Store) List() (map[string]string, error) {
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for h, c := range f.Credentials {
		out[h] = c.Username
	}
	return out, nil
}

// Hosts lists the hosts with a credential, sorted.
func (s *Store) Hosts() ([]string, error) {
	m, err := s.List()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(m))
	for h := range m {
		out = append(out, h)
	}
	sort.Strings(out)
	return out, nil
}

// Put stores c as host's credential, replacing any other.
func (s *Store) Put(host string, c Credential) error {
	return s.edit(func(f *storeFile) { f.Credentials[host] = c })
}

// Erase removes host's credential; erasing an absent one is not an error.
func (s *Store) Erase(host string) error {
	return s.edit(func(f *storeFile) { delete(f.Credentials, host) })
}

func (s *Store) edit(change func(*storeFile)) error {
	if err := s.checkPlace(true); err != nil {
		return err
	}
	err := atomicfile.Edit(s.Path, 0o600, func(old []byte) ([]byte, error) {
		f, err := parseStore(old)
		if err != nil {
			return nil, err
		}
		change(f)
		return json.MarshalIndent(f, "", "  ")
	})
	if err != nil {
		return fmt.Errorf("update the credential store %s: %w", s.Path, err)
	}
	return nil
}

func (s *Store) read() (*storeFile, error) {
	if err := s.checkPlace(false); err != nil {
		return nil, err
	}
	// O_NOFOLLOW: checkPlace saw no link, and none can appear in a 0700
	// directory of ours since.
	fh, err := os.OpenFile(s.Path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return &storeFile{Credentials: map[string]Credential{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the credential store %s: %w", s.Path, err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read the credential store %s: %w", s.Path, err)
	}
	return parseStore(data)
}

func parseStore(data []byte) (*storeFile, error) {
	f := &storeFile{}
	if len(data) > 0 {
		if err := json.Unmarshal(data, f); err != nil {
			// json's messages quote no values, so no secret leaks here.
			return nil, fmt.Errorf("the credential store is not valid JSON: %w", err)
		}
	}
	if f.Credentials == nil {
		f.Credentials = map[string]Credential{}
	}
	return f, nil
}

// checkPlace makes sure the store's directory is a 0700 directory of this
// user (creating it when create is set) and the store is not a link: a
// link planted in a shared or misconfigured place must not make us read
// another file or write our secrets through it.
func (s *Store) checkPlace(create bool) error {
	dir := filepath.Dir(s.Path)
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create the credential store's directory: %w", err)
		}
	}
	if err := checkOwnedDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) && !create {
			return nil
		}
		return err
	}
	st, err := os.Lstat(s.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case st.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("the credential store %s is a symbolic link: refusing to follow it", s.Path)
	case !st.Mode().IsRegular():
		return fmt.Errorf("the credential store %s is not a regular file", s.Path)
	case owner(st) != os.Getuid():
		return fmt.Errorf("the credential store %s belongs to another user (uid %d)", s.Path, owner(st))
	}
	return nil
}

// checkOwnedDir accepts dir when it (and the link it may be) belongs to
// this user, and takes group and world access away from it.
func checkOwnedDir(dir string) error {
	lst, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if lst.Mode()&fs.ModeSymlink != 0 && owner(lst) != os.Getuid() {
		return fmt.Errorf("%s is a symbolic link of another user (uid %d): refusing to follow it", dir, owner(lst))
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if owner(st) != os.Getuid() {
		return fmt.Errorf("%s belongs to another user (uid %d): refusing to keep credentials there", dir, owner(st))
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("restrict %s to its owner: %w", dir, err)
		}
	}
	return nil
}

func owner(st fs.FileInfo) int {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid)
	}
	return -1
}
