package identity_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/identity/identitytest"
)

// countingConnector wraps a real connector to count the logins that reach it.
type countingConnector struct {
	identity.PasswordConnector
	calls int
}

func (c *countingConnector) Login(ctx context.Context, u, p string) (identity.Identity, bool, error) {
	c.calls++
	return c.PasswordConnector.Login(ctx, u, p)
}

// failingConnector injects an outage.
type failingConnector struct{}

func (failingConnector) Login(context.Context, string, string) (identity.Identity, bool, error) {
	return identity.Identity{}, false, errors.New("connection refused")
}

func newFile(t *testing.T, users ...string) *htpasswd.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "htpasswd")
	for _, u := range users {
		if err := htpasswd.Set(path, u, u+"-pw", 4); err != nil {
			t.Fatal(err)
		}
	}
	f, err := htpasswd.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestChainFirstConnectorThatKnowsTheUserDecides(t *testing.T) {
	robots := newFile(t, "robot")
	people := newFile(t, "alice", "robot")
	c := identity.NewChain([]identity.Connector{identitytest.Connector(t, "robots", robots), identitytest.Connector(t, "people", people)}, nil)
	ctx := context.Background()

	id, ok, err := c.Login(ctx, "alice", "alice-pw")
	if !ok || err != nil || id.Connector != "people" {
		t.Fatalf("alice: %+v %v %v", id, ok, err)
	}
	id, ok, err = c.Login(ctx, "robot", "robot-pw")
	if !ok || err != nil || id.Connector != "robots" {
		t.Fatalf("robot: %+v %v %v", id, ok, err)
	}
	// robots knows "robot": a wrong password there is final, people is not asked.
	if _, ok, err := c.Login(ctx, "robot", "alice-pw"); ok || err != nil {
		t.Fatalf("wrong password: %v %v", ok, err)
	}
	if _, ok, err := c.Login(ctx, "nobody", "x"); ok || err != nil {
		t.Fatalf("unknown everywhere: %v %v", ok, err)
	}
	if _, ok, _ := c.Login(ctx, "alice", ""); ok {
		t.Fatal("empty password accepted")
	}
}

// decoyCounter is a connector that knows nobody and counts the decoys it is asked for.
type decoyCounter struct{ logins, decoys int }

func (d *decoyCounter) Login(context.Context, string, string) (identity.Identity, bool, error) {
	d.logins++
	return identity.Identity{}, false, identity.ErrUnknownUser
}

func (d *decoyCounter) Decoy(context.Context, string, string) { d.decoys++ }

// A refusal by one connector makes the later ones spend their decoy, so it
// costs what a name nobody knows costs; a success or an earlier connector's
// refusal does not.
func TestChainRefusalAsksTheLaterConnectorsForADecoy(t *testing.T) {
	before, after := &decoyCounter{}, &decoyCounter{}
	c := identity.NewChain([]identity.Connector{identitytest.Connector(t, "before", before), identitytest.Connector(t, "people", newFile(t, "alice")), identitytest.Connector(t, "after", after)}, nil)
	ctx := context.Background()
	for _, step := range []struct {
		user, password                    string
		beforeLogins, afterLogins, decoys int
	}{
		{"alice", "wrong", 1, 0, 1},
		{"alice", "alice-pw", 2, 0, 1},
		{"nobody", "x", 3, 1, 1},
	} {
		_, _, _ = c.Login(ctx, step.user, step.password)
		if before.logins != step.beforeLogins || before.decoys != 0 || after.logins != step.afterLogins || after.decoys != step.decoys {
			t.Fatalf("after %s/%s: before %+v, after %+v", step.user, step.password, *before, *after)
		}
	}
}

func TestChainOutageIsAnErrorNotWrongPassword(t *testing.T) {
	c := identity.NewChain([]identity.Connector{identitytest.Connector(t, "ldap", failingConnector{})}, nil)
	_, ok, err := c.Login(context.Background(), "alice", "pw")
	if ok || err == nil {
		t.Fatalf("outage: ok=%v err=%v, want an error", ok, err)
	}
}

func TestCredentialCacheSkipsTheBackendForKnownPasswords(t *testing.T) {
	cc := &countingConnector{PasswordConnector: newFile(t, "alice")}
	cache := identity.NewCredentialCache(10, time.Minute)
	c := identity.NewChain([]identity.Connector{identitytest.Connector(t, "local", cc)}, cache)
	ctx := context.Background()
	for range 5 {
		if _, ok, err := c.Login(ctx, "alice", "alice-pw"); !ok || err != nil {
			t.Fatalf("login: %v %v", ok, err)
		}
	}
	if cc.calls != 1 {
		t.Fatalf("backend asked %d times, want 1", cc.calls)
	}
	// A wrong password is never answered from the cache.
	if _, ok, _ := c.Login(ctx, "alice", "alice-pw2"); ok || cc.calls != 2 {
		t.Fatalf("wrong password: ok=%v calls=%d", ok, cc.calls)
	}
	cache.Purge()
	if _, ok, _ := c.Login(ctx, "alice", "alice-pw"); !ok || cc.calls != 3 {
		t.Fatalf("after purge: ok=%v calls=%d", ok, cc.calls)
	}
}

func TestCredentialCacheExpires(t *testing.T) {
	cache := identity.NewCredentialCache(10, 50*time.Millisecond)
	cache.Put("local", "alice", "pw", identity.Identity{Subject: "alice"})
	if _, ok := cache.Get("local", "alice", "pw"); !ok {
		t.Fatal("miss right after Put")
	}
	if _, ok := cache.Get("other", "alice", "pw"); ok {
		t.Fatal("hit for another connector")
	}
	time.Sleep(120 * time.Millisecond)
	if _, ok := cache.Get("local", "alice", "pw"); ok {
		t.Fatal("hit after the TTL")
	}
	var off *identity.CredentialCache = identity.NewCredentialCache(0, time.Minute)
	off.Put("local", "alice", "pw", identity.Identity{})
	if _, ok := off.Get("local", "alice", "pw"); ok {
		t.Fatal("disabled cache remembered")
	}
}

// An adapter with no capability would never be asked: NewConnector refuses
// it rather than leaving it silently out of the chain.
func TestNewConnectorRefusesAnAdapterWithNoCapability(t *testing.T) {
	if _, err := identity.NewConnector("odd", struct{}{}); err == nil {
		t.Fatal("an adapter that checks nothing was accepted")
	}
	c, err := identity.NewConnector("local", newFile(t, "alice"))
	if err != nil || c.Password == nil || c.Refresh == nil || c.Decoy == nil || c.Token != nil || c.Names != nil || c.Uncached {
		t.Fatalf("htpasswd capabilities: %+v, %v", c, err)
	}
}
