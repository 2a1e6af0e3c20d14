package htpasswd_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/htpasswd"
)

func TestParseGroupsReadsApacheGroupFiles(t *testing.T) {
	got, err := htpasswd.ParseGroups("groups", []byte(`# Apache AuthGroupFile
dev: alice bob
ops:	bob

dev: carol
empty:
admins: alice alice
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"alice": {"admins", "dev"}, "bob": {"dev", "ops"}, "carol": {"dev"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for user, groups := range want {
		if !slices.Equal(got[user], groups) {
			t.Errorf("%s: groups %v, want %v", user, got[user], groups)
		}
	}
}

func TestParseGroupsNamesTheBadLine(t *testing.T) {
	for _, line := range []string{"dev alice", ": alice", "my group: alice"} {
		_, err := htpasswd.ParseGroups("/etc/groups", []byte("ok: a\n\n"+line+"\n"))
		if err == nil || !strings.HasPrefix(err.Error(), "/etc/groups:3: ") {
			t.Errorf("%q: err = %v, want one naming /etc/groups:3", line, err)
		}
	}
}

// The groups file configured beside the htpasswd file gives users their
// groups at login and refresh, and is reloaded when it changes; a broken
// edit keeps the groups that were loaded.
func TestGroupsFileIsLoadedAndReloaded(t *testing.T) {
	dir := t.TempDir()
	if err := htpasswd.Set(filepath.Join(dir, "htpasswd"), "alice", "pw", 4); err != nil {
		t.Fatal(err)
	}
	groups := filepath.Join(dir, "groups")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(groups, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		// A new mtime even on a coarse clock: the watcher compares stamps.
		later := time.Now().Add(time.Duration(len(s)) * time.Second)
		os.Chtimes(groups, later, later)
	}
	write("dev: alice\nops: alice\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 10)
	cfg := htpasswd.Config{File: "htpasswd", GroupsFile: "groups"}
	f, err := cfg.Open(ctx, identity.Env{BaseDir: dir, Changed: func() { changed <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	login := func() []string {
		t.Helper()
		id, ok, err := f.Login(ctx, "alice", "pw")
		if !ok || err != nil {
			t.Fatalf("login: %v %v", ok, err)
		}
		ref, ok, err := f.Refresh(ctx, id)
		if !ok || err != nil || !slices.Equal(ref.Groups, id.Groups) {
			t.Fatalf("refresh: %v %v %v", ok, err, ref.Groups)
		}
		return id.Groups
	}
	if g := login(); !slices.Equal(g, []string{"dev", "ops"}) {
		t.Fatalf("groups %v", g)
	}

	wait := func() {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(5 * htpasswd.PollInterval):
			t.Fatal("the groups file was not reloaded")
		}
	}
	write("dev: alice bob\nops: bob\n")
	wait()
	if g := login(); !slices.Equal(g, []string{"dev"}) {
		t.Fatalf("after the reload: groups %v, want [dev]", g)
	}

	write("dev alice\n") // broken: the loaded groups stay
	time.Sleep(3 * htpasswd.PollInterval)
	if g := login(); !slices.Equal(g, []string{"dev"}) {
		t.Fatalf("after a broken edit: groups %v, want [dev]", g)
	}

	if _, err := (&htpasswd.Config{File: "htpasswd", GroupsFile: "nope"}).Open(ctx, identity.Env{BaseDir: dir, Check: true}); err == nil || !strings.Contains(err.Error(), "groups_file") {
		t.Errorf("a missing groups file: err = %v, want one naming groups_file", err)
	}
	write("dev: alice\nbad line\n")
	if _, err := (&htpasswd.Config{File: "htpasswd", GroupsFile: "groups"}).Open(ctx, identity.Env{BaseDir: dir, Check: true}); err == nil || !strings.Contains(err.Error(), groups+":2:") {
		t.Errorf("a broken groups file: err = %v, want one naming %s:2", err, groups)
	}
}

// A large group is one long line (Apache's format has no other way but
// repeating the group name): 20,000 members, far past bufio.Scanner's
// 64 KiB, are all read, and the line after it too.
func TestParseGroupsReadsAGroupOfManyMembers(t *testing.T) {
	var b strings.Builder
	b.WriteString("everyone:")
	for i := range 20000 {
		b.WriteString(" user" + strconv.Itoa(i))
	}
	b.WriteString("\nadmins: user7\n")
	got, err := htpasswd.ParseGroups("groups", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20000 || !slices.Equal(got["user19999"], []string{"everyone"}) || !slices.Equal(got["user7"], []string{"admins", "everyone"}) {
		t.Fatalf("%d users; user19999 %v, user7 %v", len(got), got["user19999"], got["user7"])
	}
}
