package robot_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tollgate/tollgate/identity/robot"
)

// FuzzStore: any store content loads or is refused; a loaded store never
// lets a login through without the secret.
func FuzzStore(f *testing.F) {
	f.Add(`{"version": 1, "robots": [{"name": "ci", "scopes": ["repository:a/*:pull"], "created": "2026-01-01T00:00:00Z", "rotated": "2026-01-01T00:00:00Z", "secret_hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}`)
	f.Add(`{"version": 1, "robots": []}`)
	f.Add(`{`)
	f.Fuzz(func(t *testing.T, data string) {
		path := filepath.Join(t.TempDir(), "robots.json")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := robot.Open(path)
		if err != nil {
			return
		}
		for _, user := range []string{"robot-ci", "robot-", "ci", ""} {
			if _, ok, _ := c.Login(context.Background(), user, ""); ok {
				t.Fatalf("%q logged in with an empty secret from %q", user, data)
			}
		}
	})
}
