package credhelper

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/test/testenv"
)

func TestHostNormalisesWhatClientsPass(t *testing.T) {
	for in, want := range map[string]string{
		"registry.example.com":             "registry.example.com",
		"Registry.Example.com:5000\n":      "registry.example.com:5000",
		"https://registry.example.com":     "registry.example.com",
		"https://index.docker.io/v1/":      "index.docker.io",
		"localhost:5000/v2/":               "localhost:5000",
		"http://127.0.0.1:5000/v2/token?x": "127.0.0.1:5000",
	} {
		if got, err := Host(in); err != nil || got != want {
			t.Errorf("Host(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Host(" \n"); err == nil {
		t.Error("Host accepted an empty server URL")
	}
}

func TestStoreKeepsCredentialsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tollgate")
	s := &Store{Path: filepath.Join(dir, "credentials.json")}
	if _, err := s.Get("r.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on an empty store: %v, want ErrNotFound", err)
	}
	c := Credential{Username: IdentityTokenUser, Secret: "rt-secret", Realm: "https://auth/token"}
	if err := s.Put("r.example", c); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get("r.example"); err != nil || got != c {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, s.Path: 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, st.Mode().Perm(), err, want)
		}
	}
	if strings.Contains(c.String(), "rt-secret") {
		t.Error("Credential.String shows the secret")
	}
	if err := s.Erase("r.example"); err != nil {
		t.Fatal(err)
	}
	if err := s.Erase("r.example"); err != nil {
		t.Fatalf("erasing an absent credential: %v", err)
	}
	if _, err := s.Get("r.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Erase: %v", err)
	}
}

func TestStoreTightensAnOpenDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tollgate")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Store{Path: filepath.Join(dir, "credentials.json")}
	if err := s.Put("r", Credential{Username: IdentityTokenUser, Secret: "x"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v, want 0700", st.Mode().Perm())
	}
}

// TestStoreRefusesALinkInPlaceOfTheFile: a link left where the store
// lives is neither read nor written through, nor replaced.
func TestStoreRefusesALinkInPlaceOfTheFile(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	target := filepath.Join(outside, "planted.json")
	if err := os.WriteFile(target, []byte(`{"credentials":{"r":{"username":"<token>","secret":"planted"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Store{Path: filepath.Join(dir, "credentials.json")}
	if err := os.Symlink(target, s.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("r"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Get through a link: %v, want a refusal", err)
	}
	if err := s.Put("r", Credential{Username: IdentityTokenUser, Secret: "mine"}); err == nil {
		t.Error("Put wrote through a link")
	}
	data, _ := os.ReadFile(target)
	if strings.Contains(string(data), "mine") {
		t.Error("the link's target received the secret")
	}
	if st, err := os.Lstat(s.Path); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced")
	}
}

func TestStoreNeverPrintsASecretInAnError(t *testing.T) {
	dir := t.TempDir()
	s := &Store{Path: filepath.Join(dir, "credentials.json")}
	if err := os.WriteFile(s.Path, []byte(`{"credentials":{"r":{"secret":"rt-verysecret","username":`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get("r")
	if err == nil || strings.Contains(err.Error(), "verysecret") {
		t.Fatalf("Get on a broken store: %v", err)
	}
}

// TestStoreRefusesAPlaceOfAnotherUser: a directory link, or a directory,
// that another user owns is not where this user's secrets go. Changing an
// owner needs root; the test machines run as root.
func TestStoreRefusesAPlaceOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root, to give a file to another user") // CI runs as root: a failure there
	}
	const other = 4242
	base, elsewhere := t.TempDir(), t.TempDir()
	link := filepath.Join(base, "tollgate")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, other, other); err != nil {
		t.Fatal(err)
	}
	s := &Store{Path: filepath.Join(link, "credentials.json")}
	if err := s.Put("r", Credential{Username: IdentityTokenUser, Secret: "x"}); err == nil || !strings.Contains(err.Error(), "another user") {
		t.Errorf("Put through another user's link: %v", err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "credentials.json")); err == nil {
		t.Error("the secret was written through another user's link")
	}

	theirs := filepath.Join(base, "theirs")
	if err := os.Mkdir(theirs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, other, other); err != nil {
		t.Fatal(err)
	}
	s = &Store{Path: filepath.Join(theirs, "credentials.json")}
	if _, err := s.Get("r"); err == nil || !strings.Contains(err.Error(), "another user") {
		t.Errorf("Get in another user's directory: %v", err)
	}
}
