package robot_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/identity/identitytest"
	"github.com/tollgate/tollgate/identity/robot"
)

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "robots.json")
	opts := robot.CreateOptions{Name: "ci", Scopes: []string{"repository:team/*:pull"}, TTL: time.Hour, Now: time.Now()}
	_, secret, err := robot.Create(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := robot.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	identitytest.RunPassword(t, identitytest.Password{
		Adapter: c, User: "robot-ci", Password: secret, Subject: "robot-ci", Unknown: "alice",
		// The store is written again without the robot, as an edit by hand
		// or a restored backup would leave it.
		Remove: func(t *testing.T) {
			other := filepath.Join(dir, "other.json")
			opts.Name = "other"
			if _, _, err := robot.Create(other, opts); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
			if err := c.Reload(); err != nil {
				t.Fatal(err)
			}
		},
	})
}
