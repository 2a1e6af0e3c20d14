package main

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/identity/htpasswd"
)

// otherUID stands for another user of a shared machine ("nobody").
const otherUID = 65534

// chownOther hands path (and everything below it) to another user. Only root
// can; elsewhere the test skips, and under CI=true (which runs as root) it
// fails instead, so the ownership cases always run in CI.
func chownOther(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("handing a file to another user needs root, and CI=true runs as root")
		}
		t.Skip("handing a file to another user needs root")
	}
	err := filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, otherUID, otherUID)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mkdirMode(t *testing.T, dir string, mode fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // past the umask, and the sticky bit
		t.Fatal(err)
	}
}

func writeMode(t *testing.T, path, data string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func plantKeys(t *testing.T, dir string) {
	t.Helper()
	keyPEM, certPEM, err := broker.GenerateKey(broker.KeyEC, "planted", time.Now().Add(-time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.WriteKeyPair(dir, "planted", keyPEM, certPEM); err != nil {
		t.Fatal(err)
	}
}

// TestDevStateRefusesWhatOthersCanWrite: development mode uses keys, users
// and passwords from its state directory, so it refuses a state directory,
// or a file in it, that another user owns or can write, and symbolic links
// in it; the error names the path, the reason and the way out.
func TestDevStateRefusesWhatOthersCanWrite(t *testing.T) {
	cases := []struct {
		name  string
		plant func(t *testing.T, state string) // state does not exist yet; its parent does
		want  string
		after func(t *testing.T, state string) // what must not have happened
	}{
		{"state directory owned by another user", func(t *testing.T, state string) {
			mkdirMode(t, state, 0o700)
			chownOther(t, state)
		}, "is owned by uid 65534, not you", nil},
		{"state directory writable by everyone", func(t *testing.T, state string) {
			mkdirMode(t, state, 0o777)
		}, "other users can write it (mode 0777)", nil},
		{"passwords.txt made beforehand, writable by everyone", func(t *testing.T, state string) {
			mkdirMode(t, state, 0o700)
			writeMode(t, filepath.Join(state, "passwords.txt"), "", 0o666)
		}, "passwords.txt: other users can write it (mode 0666)", func(t *testing.T, state string) {
			if data, _ := os.ReadFile(filepath.Join(state, "passwords.txt")); len(data) != 0 {
				t.Errorf("the planted passwords.txt received %q", data)
			}
		}},
		{"htpasswd planted by another user", func(t *testing.T, state string) {
			mkdirMode(t, state, 0o700)
			file := filepath.Join(state, "htpasswd")
			if err := htpasswd.Set(file, "mallory", "planted", bcrypt.MinCost); err != nil {
				t.Fatal(err)
			}
			chownOther(t, file)
		}, "htpasswd is owned by uid 65534, not you", nil},
		{"keys planted by another user", func(t *testing.T, state string) {
			mkdirMode(t, state, 0o700)
			plantKeys(t, filepath.Join(state, "keys"))
			chownOther(t, filepath.Join(state, "keys"))
		}, "keys is owned by uid 65534, not you", nil},
		{"keys directory writable by everyone", func(t *testing.T, state string) {
			mkdirMode(t, state, 0o700)
			mkdirMode(t, filepath.Join(state, "keys"), 0o777)
			plantKeys(t, filepath.Join(state, "keys"))
		}, "keys: other users can write it (mode 0777)", nil},
		{"keys is a link to another directory", func(t *testing.T, state string) {
			mkdirMode(t, state, 0o700)
			elsewhere := t.TempDir()
			plantKeys(t, elsewhere)
			if err := os.Symlink(elsewhere, filepath.Join(state, "keys")); err != nil {
				t.Fatal(err)
			}
		}, "keys is a symbolic link", nil},
		{"registry.yml is a link to a file outside", func(t *testing.T, state string) {
			mkdirMode(t, state, 0o700)
			outside := filepath.Join(filepath.Dir(state), "precious")
			writeMode(t, outside, "precious\n", 0o600)
			if err := os.Symlink(outside, filepath.Join(state, "registry.yml")); err != nil {
				t.Fatal(err)
			}
		}, "registry.yml is a symbolic link", func(t *testing.T, state string) {
			if data, _ := os.ReadFile(filepath.Join(filepath.Dir(state), "precious")); string(data) != "precious\n" {
				t.Errorf("written through the link: %q", data)
			}
		}},
		{"policy file writable by everyone", func(t *testing.T, state string) {
			mkdirMode(t, state, 0o700)
			mkdirMode(t, filepath.Join(state, "policy"), 0o755)
			writeMode(t, filepath.Join(state, "policy", "data.json"), "{}", 0o666)
		}, "data.json: other users can write it (mode 0666)", nil},
		{"parent writable by everyone without the sticky bit", func(t *testing.T, state string) {
			if err := os.Chmod(filepath.Dir(state), 0o777); err != nil {
				t.Fatal(err)
			}
		}, "every user can write it and it has no sticky bit", nil},
		{"parent owned by another user", func(t *testing.T, state string) {
			chownOther(t, filepath.Dir(state))
		}, "which belongs to another user (uid 65534)", nil},
		{"grandparent writable by everyone without the sticky bit", func(t *testing.T, state string) {
			mid := filepath.Dir(state)
			mkdirMode(t, mid, 0o755)
			if err := os.Chmod(filepath.Dir(mid), 0o777); err != nil {
				t.Fatal(err)
			}
		}, "every user can write it and it has no sticky bit", nil},
		{"state directory others can read in a sticky directory like /tmp", func(t *testing.T, state string) {
			if err := os.Chmod(filepath.Dir(state), fs.ModeSticky|0o777); err != nil {
				t.Fatal(err)
			}
			mkdirMode(t, state, 0o755)
		}, "must be mode 0700 (it is 0755)", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state")
			if strings.HasPrefix(c.name, "grandparent") {
				state = filepath.Join(filepath.Dir(state), "mid", "state")
			}
			c.plant(t, state)
			_, _, err := devConfig(state, "127.0.0.1:0")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("devConfig: %v\nwant an error containing %q", err, c.want)
			} else if t.Log(err); !strings.Contains(err.Error(), "--state-dir") {
				t.Errorf("the error does not say how to get out: %v", err)
			}
			if c.after != nil {
				c.after(t, state)
			}
		})
	}
}

// TestDevStateServeRefusesAForeignStateDir: the refusal reaches the user of
// `tollgate serve` as its error, and nothing is written to the directory.
func TestDevStateServeRefusesAForeignStateDir(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	mkdirMode(t, state, 0o777)
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a broker that starts is stopped
	defer cancel()
	err := app.RunContext(ctx, []string{"tollgate", "serve", "--state-dir", state, "--listen", "127.0.0.1:0"})
	want := "state directory " + state + ": other users can write it (mode 0777): remove it or choose another --state-dir"
	if err == nil || err.Error() != want {
		t.Fatalf("serve: %v\nwant: %s", err, want)
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("wrote into a directory it refused: %v", entries)
	}
}

// TestDevStateFirstStartAndRestart: a fresh state directory, also one in a
// sticky world-writable directory like /tmp, is made private, and a restart
// reuses it and its passwords.
func TestDevStateFirstStartAndRestart(t *testing.T) {
	for _, parentMode := range []fs.FileMode{0o700, 0o755, fs.ModeSticky | 0o777} {
		t.Run(parentMode.String(), func(t *testing.T) {
			parent := t.TempDir()
			if err := os.Chmod(parent, parentMode); err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(parent, "state")
			_, first, err := devConfig(state, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			for path, want := range map[string]fs.FileMode{
				"": 0o700, "config.yaml": 0o600, "htpasswd": 0o600, "passwords.txt": 0o600,
				"keys": 0o700, "keys/dev.key": 0o600, "keys/dev.crt": 0o644,
			} {
				fi, err := os.Lstat(filepath.Join(state, path))
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != want {
					t.Errorf("%s: mode %#o, want %#o", path, got, want)
				}
			}
			_, again, err := devConfig(state, "127.0.0.1:0")
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			if len(first.passwords) != 2 || len(again.passwords) != 2 || first.passwords[0] != again.passwords[0] {
				t.Fatalf("a restart read %d passwords (first start made %d) or different ones", len(again.passwords), len(first.passwords))
			}
		})
	}
}
