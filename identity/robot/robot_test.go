package robot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/identitytest"
	"github.com/tollgate/tollgate/identity/robot"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func store(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "robots.json")
}

func create(t *testing.T, path, name string, ttl time.Duration) string {
	t.Helper()
	_, secret, err := robot.Create(path, robot.CreateOptions{Name: name, Scopes: []string{"repository:team/*:pull,push"}, TTL: ttl, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func TestNamesMustBeShellSafe(t *testing.T) {
	path := store(t)
	for _, bad := range []string{"", "a$b", "robot$ci", "a b", "a;b", "a'b", `a"b`, "a`b", "a|b", "a&b", "a/b", "a\\b", "a*b", "$(id)", "-lead", "trail-", ".hidden", "é", strings.Repeat("a", 64), "a\nb"} {
		if _, _, err := robot.Create(path, robot.CreateOptions{Name: bad, Scopes: []string{"repository:x:pull"}, Now: t0}); err == nil {
			t.Errorf("name %q was accepted", bad)
		}
	}
	for _, good := range []string{"a", "team-ci", "team_ci.v2", "A1", "robot-prefixed"} {
		if _, _, err := robot.Create(path, robot.CreateOptions{Name: good, Scopes: []string{"repository:x:pull"}, Now: t0}); err != nil {
			t.Errorf("name %q refused: %v", good, err)
		}
	}
	list, _ := robot.List(path)
	var users []string
	for _, r := range list {
		users = append(users, r.User())
	}
	// robot-NAME; a NAME given with the prefix is not prefixed twice.
	if got := strings.Join(users, " "); got != "robot-A1 robot-a robot-prefixed robot-team-ci robot-team_ci.v2" {
		t.Errorf("users %s", got)
	}
}

func TestScopesAreChecked(t *testing.T) {
	for _, bad := range [][]string{nil, {"team/app"}, {"repository:team/app"}, {"repository:team/*:*"}, {"repository:team/app:"}} {
		if _, _, err := robot.Create(store(t), robot.CreateOptions{Name: "x", Scopes: bad, Now: t0}); err == nil {
			t.Errorf("scopes %q accepted", bad)
		}
	}
}

func TestSecretIsStoredOnlyAsAHash(t *testing.T) {
	path := store(t)
	secret := create(t, path, "ci", time.Hour)
	if len(secret) < 50 || strings.Trim(secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
		t.Fatalf("secret %q: want 50+ shell-safe base32 characters", secret)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), secret) {
		t.Fatal("the secret is in the store")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("store mode %v, want 0600", st.Mode().Perm())
	}
	if _, _, err := robot.Create(path, robot.CreateOptions{Name: "ci", Scopes: []string{"repository:x:pull"}, Now: t0}); err == nil {
		t.Error("a second robot with the same name was created")
	}
}

func login(t *testing.T, c *robot.Connector, user, secret string) (identity.Identity, bool, error) {
	t.Helper()
	return c.Login(context.Background(), user, secret)
}

func TestLoginExpiryRevocationRotation(t *testing.T) {
	path := store(t)
	secret := create(t, path, "ci", time.Hour)
	now := t0
	c, err := robot.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Now = func() time.Time { return now }

	id, ok, err := login(t, c, "robot-ci", secret)
	if err != nil || !ok {
		t.Fatalf("login: %v %v", ok, err)
	}
	claims := id.Claims["robot"].(map[string]any)
	if id.Subject != "robot-ci" || claims["name"] != "ci" || len(claims["scopes"].([]any)) != 1 {
		t.Fatalf("identity %+v", id)
	}
	if _, ok, err := login(t, c, "robot-ci", secret+"x"); ok || err != nil {
		t.Fatalf("wrong secret: %v %v", ok, err)
	}
	if _, ok, err := login(t, c, "robot-nobody", secret); ok || err != nil {
		t.Fatalf("unknown robot: %v %v (want a plain wrong credential)", ok, err)
	}
	if _, _, err := login(t, c, "alice", secret); !errors.Is(err, identity.ErrUnknownUser) {
		t.Fatalf("a person's name: %v, want ErrUnknownUser for the next connector", err)
	}

	var rejected *identity.RejectedError
	now = t0.Add(time.Hour)
	if _, ok, err := login(t, c, "robot-ci", secret); ok || !errors.As(err, &rejected) || !strings.Contains(rejected.Reason, "expired") {
		t.Fatalf("expired robot: %v %v", ok, err)
	}
	// An expired robot with a wrong secret learns nothing about its status.
	if _, ok, err := login(t, c, "robot-ci", "wrong"); ok || err != nil {
		t.Fatalf("expired robot, wrong secret: %v %v", ok, err)
	}

	// Rotation without --expires keeps the (passed) expiry: still expired.
	ttl := 24 * time.Hour
	if _, _, err := robot.Rotate(path, "ci", nil, now); err != nil {
		t.Fatal(err)
	}
	r, fresh, err := robot.Rotate(path, "ci", &ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Expires.Equal(now.Add(ttl)) || !r.Rotated.Equal(now) {
		t.Fatalf("rotated record %+v", r)
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := login(t, c, "robot-ci", secret); ok {
		t.Fatal("the old secret works after rotation")
	}
	if _, ok, err := login(t, c, "robot-ci", fresh); !ok || err != nil {
		t.Fatalf("the new secret: %v %v", ok, err)
	}

	if err := robot.Revoke(path, "robot-ci", now); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := login(t, c, "robot-ci", fresh); ok || !errors.As(err, &rejected) || !strings.Contains(rejected.Reason, "revoked") {
		t.Fatalf("revoked robot: %v %v", ok, err)
	}
	if _, _, err := c.Refresh(context.Background(), id); !errors.As(err, &rejected) {
		t.Fatalf("refresh of a revoked robot: %v", err)
	}
	if _, _, err := robot.Rotate(path, "ci", nil, now); err == nil {
		t.Fatal("a revoked robot was rotated back to life")
	}
	list, _ := robot.List(path)
	if len(list) != 1 || list[0].Status(now) != "revoked" {
		t.Fatalf("list after revoke: %+v", list)
	}
}

func TestConcurrentEditsLoseNothing(t *testing.T) {
	path := store(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := robot.Create(path, robot.CreateOptions{Name: fmt.Sprintf("r%d", i), Scopes: []string{"repository:x:pull"}, Now: t0}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if list, err := robot.List(path); err != nil || len(list) != 20 {
		t.Fatalf("%d robots after 20 concurrent creates (%v)", len(list), err)
	}
}

func TestChainNeverCachesRobots(t *testing.T) {
	path := store(t)
	secret := create(t, path, "ci", time.Hour)
	c, err := robot.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	c.Now = func() time.Time { return now }
	chain := identity.NewChain([]identity.Connector{identitytest.Connector(t, "robot", c)}, identity.NewCredentialCache(100, time.Hour))
	if _, ok, err := chain.Login(context.Background(), "robot-ci", secret); !ok || err != nil {
		t.Fatalf("first login: %v %v", ok, err)
	}
	now = t0.Add(2 * time.Hour) // expired, while the cache entry would still be fresh
	var rejected *identity.RejectedError
	if _, ok, err := chain.Login(context.Background(), "robot-ci", secret); ok || !errors.As(err, &rejected) {
		t.Fatalf("expired robot through the chain: %v %v", ok, err)
	}
}

func TestBrokenStoreIsRefusedAndKeepsTheLoadedRobots(t *testing.T) {
	path := store(t)
	secret := create(t, path, "ci", 0)
	c, err := robot.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"version": 2, "robots": []}`, `{"version": 1, "robots": [{"name": "a$b"}]}`, `not json`,
		`{"version": 1, "robots": [], "extra": 1}`} {
		os.WriteFile(path, []byte(bad), 0o600)
		if err := c.Reload(); err == nil {
			t.Errorf("store %s loaded", bad)
		}
	}
	if _, ok, _ := c.Login(context.Background(), "robot-ci", secret); !ok {
		t.Fatal("a broken store dropped the loaded robots")
	}
	if _, err := robot.Open(filepath.Join(t.TempDir(), "missing.json")); err != nil {
		t.Fatalf("a missing store is an empty one: %v", err)
	}
}

// Rotation ends the refresh tokens obtained with the old secret: a refresh
// must fail once the secret it was issued for is no longer the robot's.
func TestRefreshFailsOnceTheRobotIsRotated(t *testing.T) {
	path := store(t)
	secret := create(t, path, "ci", 0)
	c, err := robot.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, ok, err := login(t, c, "robot-ci", secret)
	if !ok || err != nil {
		t.Fatalf("login: %v %v", ok, err)
	}
	if _, ok, err := c.Refresh(ctx, id); !ok || err != nil {
		t.Fatalf("refresh before rotation: %v %v", ok, err)
	}
	_, fresh, err := robot.Rotate(path, "ci", nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	var rejected *identity.RejectedError
	if _, ok, err := c.Refresh(ctx, id); ok || !errors.As(err, &rejected) || !strings.Contains(rejected.Reason, "credential changed") {
		t.Fatalf("refresh after rotation: ok=%v err=%v, want a RejectedError saying the credential changed", ok, err)
	}
	if _, ok, _ := c.Refresh(ctx, identity.Identity{Subject: "robot-ci"}); ok {
		t.Fatal("a refresh token without a credential fingerprint refreshed")
	}
	rotated, ok, err := login(t, c, "robot-ci", fresh)
	if !ok || err != nil {
		t.Fatalf("login with the new secret: %v %v", ok, err)
	}
	if _, ok, err := c.Refresh(ctx, rotated); !ok || err != nil {
		t.Fatalf("refresh of the new secret's identity: %v %v", ok, err)
	}
}
