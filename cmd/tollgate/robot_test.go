package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// `robot list NAME --file F` lists that robot of that store, as typed.
func TestRobotListNamesRobotsOfTheGivenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "robots.json")
	for _, name := range []string{"team-ci", "other"} {
		if out, err := run(t, "", "robot", "create", name, "--scope", "repository:team/*:pull", "--expires", "1d", "--file", file); err != nil {
			t.Fatalf("create %s: %v\n%s", name, err, out)
		}
	}
	out, err := run(t, "", "robot", "list", "team-ci", "--file", file)
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if !strings.Contains(out, "robot-team-ci") || strings.Contains(out, "robot-other") {
		t.Errorf("robot list team-ci:\n%s", out)
	}
	if out, err := run(t, "", "robot", "list", "robot-other", "--file", file); err != nil || !strings.Contains(out, "robot-other") || strings.Contains(out, "robot-team-ci") {
		t.Errorf("robot list robot-other: %v\n%s", err, out)
	}
	if _, err := run(t, "", "robot", "list", "nosuch", "--file", file); err == nil || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("robot list nosuch: %v, want an error naming it", err)
	}
}
