package htpasswd_test

import (
	"path/filepath"
	"testing"

	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/identity/identitytest"
)

func TestConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	for _, u := range []string{"alice", "bob"} {
		if err := htpasswd.Set(path, u, u+"-pw", 4); err != nil {
			t.Fatal(err)
		}
	}
	f, err := htpasswd.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	identitytest.RunPassword(t, identitytest.Password{
		Adapter: f, User: "alice", Password: "alice-pw", Subject: "alice", Unknown: "mallory",
		Remove: func(t *testing.T) {
			if err := htpasswd.Remove(path, "alice"); err != nil {
				t.Fatal(err)
			}
			if err := f.Reload(); err != nil {
				t.Fatal(err)
			}
		},
	})
}
