package broker_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/identitytest"
	"github.com/tollgate/tollgate/identity/robot"
)

func throttle() *broker.Throttle {
	return &broker.Throttle{Store: broker.NewMemoryCounters(1000, 24*time.Hour), Window: time.Minute,
		MaxPerUser: 5, MaxPerAddress: 20, KnownAddressWindow: time.Hour}
}

// tokenFrom asks for a token as user:pass from addr and returns the status
// and Retry-After.
func tokenFrom(f *fixture, addr, user, pass string) (int, string) {
	req := httptest.NewRequest(http.MethodGet, "/token?service="+svcName+"&scope=repository:team/app:pull", nil)
	req.RemoteAddr = addr + ":40000"
	req.SetBasicAuth(user, pass)
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, req)
	return w.Code, w.Header().Get("Retry-After")
}

func TestSprayingFromOneAddressIsThrottled(t *testing.T) {
	f := newFixture(t, func(o *broker.Options) { o.Throttle = throttle() })
	for i := range 20 {
		if code, _ := tokenFrom(f, "192.0.2.1", fmt.Sprintf("user%d", i), "guess"); code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i, code)
		}
	}
	code, retry := tokenFrom(f, "192.0.2.1", "alice", "alice-secret")
	if n, _ := strconv.Atoi(retry); code != http.StatusTooManyRequests || n < 1 || n > 60 {
		t.Fatalf("the spraying address: %d Retry-After %q, want 429 within the window", code, retry)
	}
	if code, _ := tokenFrom(f, "198.51.100.7", "alice", "alice-secret"); code != http.StatusOK {
		t.Fatalf("alice from her own address: %d", code)
	}
}

func TestSprayingOneUserFromManyAddressesSparesHerKnownAddress(t *testing.T) {
	f := newFixture(t, func(o *broker.Options) { o.Throttle = throttle() })
	if code, _ := tokenFrom(f, "198.51.100.7", "alice", "alice-secret"); code != http.StatusOK {
		t.Fatalf("alice: %d", code)
	}
	for i := range 5 {
		tokenFrom(f, fmt.Sprintf("203.0.113.%d", i), "alice", "guess")
	}
	if code, _ := tokenFrom(f, "203.0.113.200", "alice", "alice-secret"); code != http.StatusTooManyRequests {
		t.Fatalf("alice's name from a new address during the attack: %d, want 429", code)
	}
	if code, _ := tokenFrom(f, "198.51.100.7", "alice", "alice-secret"); code != http.StatusOK {
		t.Fatalf("alice from the address she used before: %d, want 200", code)
	}
	if code, _ := tokenFrom(f, "203.0.113.200", "admin", "admin-secret"); code != http.StatusOK {
		t.Fatalf("another user: %d, want 200 (not slowed by alice's attackers)", code)
	}
}

func TestWindowEnds(t *testing.T) {
	// Long enough for five bcrypt checks under the race detector on a
	// loaded machine (200ms was not).
	th := throttle()
	th.Window = 2 * time.Second
	f := newFixture(t, func(o *broker.Options) { o.Throttle = th })
	start := time.Now()
	for range 5 {
		tokenFrom(f, "192.0.2.9", "alice", "guess")
	}
	if code, _ := tokenFrom(f, "192.0.2.9", "alice", "alice-secret"); code != http.StatusTooManyRequests {
		t.Fatalf("locked: %d (after %v)", code, time.Since(start))
	}
	time.Sleep(time.Until(start.Add(th.Window + 100*time.Millisecond)))
	if code, _ := tokenFrom(f, "192.0.2.9", "alice", "alice-secret"); code != http.StatusOK {
		t.Fatalf("after the window: %d", code)
	}
}

// outage is a connector whose backend is down: a fake, because the point is
// an answer no healthy backend gives on demand.
type outage struct{ calls atomic.Int64 }

func (o *outage) Login(context.Context, string, string) (identity.Identity, bool, error) {
	o.calls.Add(1)
	return identity.Identity{}, false, identity.ErrUnavailable
}

func TestAnOutageLocksNobodyOut(t *testing.T) {
	down := &outage{}
	f := newFixture(t, func(o *broker.Options) {
		o.Throttle = throttle()
		o.Authenticator = identity.NewChain([]identity.Connector{identitytest.Connector(t, "ldap", down)}, nil)
	})
	for range 30 {
		if code, _ := tokenFrom(f, "192.0.2.5", "alice", "alice-secret"); code != http.StatusServiceUnavailable {
			t.Fatalf("outage: %d, want 503", code)
		}
	}
	if down.calls.Load() != 30 {
		t.Fatalf("%d backend calls for 30 requests: requests were throttled during an outage", down.calls.Load())
	}
}

// TestNamesAConnectorMatchesAlikeShareOneBudget: LDAP matches uid after
// NFKC, case folding and space handling, so once "alice" is locked,
// "ALICE", " alice", "Alice " or a fullwidth "ａｌｉｃｅ" must not each bring
// a fresh budget of guesses.
func TestNamesAConnectorMatchesAlikeShareOneBudget(t *testing.T) {
	f := newFixture(t, func(o *broker.Options) { o.Throttle = throttle() })
	for i := range 5 {
		tokenFrom(f, fmt.Sprintf("203.0.113.%d", i), "alice", "guess")
	}
	for _, name := range []string{"alice", "ALICE", " alice", "Alice ", "aLiCe", "ａｌｉｃｅ", "ａlice", "ALICE　"} {
		if code, _ := tokenFrom(f, "203.0.113.99", name, "guess"); code != http.StatusTooManyRequests {
			t.Errorf("%q after alice was locked: %d, want 429", name, code)
		}
	}
}

// TestRobotsCannotBeLockedOutByName: a robot's secret cannot be guessed, so
// failures under its name count per address only; wrong secrets sent from
// elsewhere must not stop the robot's runner, whose address is new to it.
func TestRobotsCannotBeLockedOutByName(t *testing.T) {
	store := filepath.Join(t.TempDir(), "robots.json")
	rec, secret, err := robot.Create(store, robot.CreateOptions{Name: "ci", Scopes: []string{"repository:team/app:pull"}, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	robots, err := robot.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *broker.Options) {
		o.Throttle = throttle()
		o.Authenticator = identity.NewChain([]identity.Connector{identitytest.Connector(t, "robots", robots)}, nil)
	})
	for i := range 12 {
		if code, _ := tokenFrom(f, fmt.Sprintf("203.0.113.%d", i%3), rec.User(), fmt.Sprint("guess-", i)); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, code)
		}
	}
	if code, _ := tokenFrom(f, "198.51.100.20", rec.User(), secret); code != http.StatusOK {
		t.Fatalf("the robot from a new address after guesses at its name: %d, want 200", code)
	}
	for i := range 20 {
		tokenFrom(f, "203.0.113.50", rec.User(), fmt.Sprint("more-", i))
	}
	if code, _ := tokenFrom(f, "203.0.113.50", rec.User(), secret); code != http.StatusTooManyRequests {
		t.Fatalf("the guessing address itself: %d, want 429 (per-address limit)", code)
	}
}

// slowLogin delays every answer of a connector, so that parallel guesses
// are all in flight at once (a fake: the point is the timing).
type slowLogin struct {
	identity.PasswordConnector
	delay time.Duration
}

func (s slowLogin) Login(ctx context.Context, user, password string) (identity.Identity, bool, error) {
	time.Sleep(s.delay)
	return s.PasswordConnector.Login(ctx, user, password)
}

// TestParallelGuessesGetNoMoreThanTheLimit: guesses sent all at once must
// not all pass the throttle before the first is counted; at most the limit
// of them reach the password check in a window.
func TestParallelGuessesGetNoMoreThanTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		users      func(i int) string
		limit      int
		limitField string
	}{
		{"one user", func(int) string { return "alice" }, 5, "per user"},
		{"one address", func(i int) string { return fmt.Sprint("user", i) }, 20, "per address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f = newFixture(t, func(o *broker.Options) {
				o.Throttle = throttle()
				o.Authenticator = identity.NewChain([]identity.Connector{identitytest.Connector(t, "local", slowLogin{f.file, 200 * time.Millisecond})}, nil)
			})
			var unauthorized atomic.Int64
			var wg sync.WaitGroup
			for i := range 40 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if code, _ := tokenFrom(f, "203.0.113.40", tc.users(i), fmt.Sprint("guess-", i)); code == http.StatusUnauthorized {
						unauthorized.Add(1)
					}
				}()
			}
			wg.Wait()
			if n := unauthorized.Load(); n > int64(tc.limit) {
				t.Fatalf("%d of 40 parallel guesses were checked, want at most the %s limit of %d", n, tc.limitField, tc.limit)
			}
			if code, _ := tokenFrom(f, "198.51.100.40", "admin", "admin-secret"); code != http.StatusOK {
				t.Fatalf("another user from another address: %d", code)
			}
		})
	}
}

// TestSuccessesAndOutagesTakeTheirCountBack: counting before the check must
// not make right passwords or outages eat the budget.
func TestSuccessesAndOutagesTakeTheirCountBack(t *testing.T) {
	f := newFixture(t, func(o *broker.Options) { o.Throttle = throttle() })
	for i := range 30 {
		if code, _ := tokenFrom(f, "192.0.2.30", "alice", "alice-secret"); code != http.StatusOK {
			t.Fatalf("login %d with the right password: %d (the limit is 20 per address)", i, code)
		}
	}
	down := &outage{}
	g := newFixture(t, func(o *broker.Options) {
		o.Throttle = throttle()
		o.Authenticator = identity.NewChain([]identity.Connector{identitytest.Connector(t, "ldap", down)}, nil)
	})
	for range 30 {
		tokenFrom(g, "192.0.2.31", "alice", "x")
	}
	if down.calls.Load() != 30 {
		t.Fatalf("%d backend calls for 30 requests during an outage", down.calls.Load())
	}
}

// TestIPv6AddressesCountPerSlash64: a host usually holds a whole /64, and
// must not get a fresh budget from every address in it.
func TestIPv6AddressesCountPerSlash64(t *testing.T) {
	f := newFixture(t, func(o *broker.Options) { o.Throttle = throttle() })
	for i := range 20 {
		tokenFrom(f, fmt.Sprintf("[2001:db8:1:2::%x]", i+1), fmt.Sprint("user", i), "guess")
	}
	if code, _ := tokenFrom(f, "[2001:db8:1:2:ffff::9]", "alice", "alice-secret"); code != http.StatusTooManyRequests {
		t.Fatalf("another address of the same /64: %d, want 429", code)
	}
	if code, _ := tokenFrom(f, "[2001:db8:1:3::1]", "alice", "alice-secret"); code != http.StatusOK {
		t.Fatalf("the next /64: %d, want 200", code)
	}
}
