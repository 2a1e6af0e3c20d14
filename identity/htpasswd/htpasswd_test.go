package htpasswd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/identity"
)

func TestParseRefusesNonBcryptHashesNamingTheLine(t *testing.T) {
	tests := []struct{ name, line string }{
		{"apr1 MD5", "bob:$apr1$Vt8E0xys$wXv9kAxP0U0Fi/jFGgdM70"},
		{"SHA1", "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="},
		{"crypt", "bob:rl0uHE4Kx9ioQ"},
		{"plain text", "bob:hunter2"},
		{"no colon", "bob"},
		{"empty user", ":$2y$05$abcdefghijklmnopqrstuuG6pA2oZ0lTqgKl9rQe8bY3A8a6KqFUe"},
	}
	good := "alice:$2y$05$F4ctNh3J9c0Ohv8mg7AdEe2dg4hsZx.oF5cMcTfS0rN8Pl0n2XCw."
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("users", []byte("# comment\n"+good+"\n\n"+tt.line+"\n"))
			if err == nil || !strings.HasPrefix(err.Error(), "users:4:") {
				t.Fatalf("err = %v, want an error naming users:4", err)
			}
		})
	}
}

func TestLoginAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := Set(path, "alice", "s3cret", 4); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if id, ok, err := f.Login(ctx, "alice", "s3cret"); !ok || err != nil || id.Subject != "alice" {
		t.Fatalf("right password: %v %v %v", id, ok, err)
	}
	if _, ok, err := f.Login(ctx, "alice", "wrong"); ok || err != nil {
		t.Fatalf("wrong password: ok=%v err=%v, want false, nil", ok, err)
	}
	if _, ok, err := f.Login(ctx, "bob", "x"); ok || !errors.Is(err, identity.ErrUnknownUser) {
		t.Fatalf("unknown user: ok=%v err=%v, want ErrUnknownUser", ok, err)
	}

	reloaded := 0
	f.OnReload = func() { reloaded++ }
	if err := Set(path, "bob", "pw", 4); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err != nil || reloaded != 1 {
		t.Fatalf("reload: %v (callbacks %d)", err, reloaded)
	}
	if _, ok, _ := f.Refresh(ctx, identity.Identity{Subject: "alice"}); ok {
		t.Fatal("removed user still refreshes")
	}
	bob, _, _ := f.Login(ctx, "bob", "pw")
	if _, ok, err := f.Refresh(ctx, bob); !ok || err != nil {
		t.Fatalf("added user does not refresh: %v", err)
	}

	// A broken file keeps the last good users.
	if err := os.WriteFile(path, []byte("carol:{SHA}x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err == nil {
		t.Fatal("broken file reloaded without error")
	}
	if _, ok, _ := f.Login(ctx, "bob", "pw"); !ok {
		t.Fatal("last good users lost after a failed reload")
	}
}

func TestEditKeepsOtherLinesAndVerifies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	for _, u := range []string{"a", "b", "c"} {
		if err := Set(path, u, u+"pw", 4); err != nil {
			t.Fatal(err)
		}
	}
	if err := Set(path, "b", "new", 4); err != nil {
		t.Fatal(err)
	}
	if ok, err := Verify(path, "b", "new"); !ok || err != nil {
		t.Fatalf("verify new password: %v %v", ok, err)
	}
	if ok, _ := Verify(path, "b", "bpw"); ok {
		t.Fatal("old password still verifies")
	}
	if err := Remove(path, "zz"); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("remove unknown: %v", err)
	}
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), "\n"); n != 3 {
		t.Fatalf("want 3 lines, got %d: %s", n, data)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	if err := Set(path, "x:y", "pw", 4); err == nil {
		t.Fatal("user name with ':' accepted")
	}
}

// A refresh ends once the password it was issued for is no longer the
// user's: changed, set again (even to the same password), or the user
// removed and created again. A refresh token from before the broker bound
// refresh tokens to the password carries no fingerprint and ends too.
func TestRefreshFailsOnceThePasswordChanged(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		change func(path string) error
	}{
		{"password changed", func(p string) error { return Set(p, "alice", "n3w", 4) }},
		{"same password set again", func(p string) error { return Set(p, "alice", "s3cret", 4) }},
		{"user removed and created again", func(p string) error {
			if err := Remove(p, "alice"); err != nil {
				return err
			}
			return Set(p, "alice", "s3cret", 4)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "htpasswd")
			if err := Set(path, "alice", "s3cret", 4); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			id, ok, err := f.Login(ctx, "alice", "s3cret")
			if !ok || err != nil {
				t.Fatalf("login: %v %v", ok, err)
			}
			if _, ok, err := f.Refresh(ctx, id); !ok || err != nil {
				t.Fatalf("refresh, nothing changed: ok=%v err=%v", ok, err)
			}
			if err := tc.change(path); err != nil {
				t.Fatal(err)
			}
			if err := f.Reload(); err != nil {
				t.Fatal(err)
			}
			var rejected *identity.RejectedError
			if _, ok, err := f.Refresh(ctx, id); ok || !errors.As(err, &rejected) || !strings.Contains(rejected.Reason, "credential changed") {
				t.Fatalf("refresh after the change: ok=%v err=%v, want a RejectedError saying the credential changed", ok, err)
			}
			if _, ok, _ := f.Refresh(ctx, identity.Identity{Subject: "alice"}); ok {
				t.Fatal("a refresh token without a credential fingerprint refreshed")
			}
		})
	}
}
