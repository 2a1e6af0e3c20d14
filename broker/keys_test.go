package broker_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/broker"
)

// A key directory that cannot be read says why, instead of "no *.key
// files": the service's user lacking the group of /etc/tollgate/keys
// (docs/operations.md, systemd) must not read as a missing key. A missing
// directory keeps the keygen hint.
func TestLoadKeyDirSaysWhyItCannotRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a.key")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{file, "not a directory"},
		{filepath.Join(dir, "missing"), "tollgate keygen --out"},
	}
	if os.Geteuid() != 0 { // root reads any directory
		locked := filepath.Join(dir, "locked")
		if err := os.Mkdir(locked, 0o000); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ path, want string }{locked, "permission denied"})
	}
	for _, c := range cases {
		_, err := broker.LoadKeyDir(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("LoadKeyDir(%s): %v, want an error saying %q", c.path, err, c.want)
		}
	}
}
