package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
)

// session list and revoke work on the development state's sessions file,
// with flags after the session id as people type them.
func TestSessionListAndRevoke(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if out, err := run(t, "", "session", "list", "--state-dir", state); err != nil || !strings.HasPrefix(out, "ID") {
		t.Fatalf("list of no sessions: %v\n%s", err, out)
	}
	store := broker.NewFileSessions(filepath.Join(state, "sessions.json"))
	now := time.Now()
	for _, s := range []*broker.Session{
		{ID: "S1", Subject: "dana", Connector: "sso", Groups: []string{"oidc:dev"}, Refresh: []byte("sealed"), Created: now, LastUsed: now, LastValidated: now},
		{ID: "S2", Subject: "dana", Connector: "sso", Created: now, LastUsed: now, LastValidated: now},
		{ID: "S3", Subject: "erin", Connector: "sso", Created: now, LastUsed: now, LastValidated: now},
	} {
		if err := store.Create(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	out, err := run(t, "", "session", "list", "--state-dir", state, "--user", "dana")
	if err != nil || !strings.Contains(out, "S1") || !strings.Contains(out, "oidc:dev") || strings.Contains(out, "S3") || strings.Contains(out, "sealed") {
		t.Fatalf("list --user dana: %v\n%s", err, out)
	}
	if out, err := run(t, "", "session", "revoke", "S3", "--state-dir", state); err != nil || !strings.Contains(out, "revoked session S3 of erin") {
		t.Fatalf("revoke S3: %v\n%s", err, out)
	}
	if out, err := run(t, "", "session", "revoke", "--user", "dana", "--state-dir", state); err != nil || !strings.Contains(out, "revoked 2 session(s) of dana") {
		t.Fatalf("revoke --user dana: %v\n%s", err, out)
	}
	if left, _ := store.List(context.Background()); len(left) != 0 {
		t.Fatalf("sessions left after revoking all: %v", left)
	}
	if out, err := run(t, "", "session", "revoke", "S9", "--state-dir", state); err != nil || !strings.Contains(out, "no session S9: nothing to revoke") {
		t.Fatalf("revoke of an unknown session: %v\n%s", err, out)
	}
	if _, err := run(t, "", "session", "revoke", "S1", "--user", "dana", "--state-dir", state); err == nil {
		t.Fatal("an id and --user together accepted")
	}
}
