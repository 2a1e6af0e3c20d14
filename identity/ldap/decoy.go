package ldap

import (
	"context"
	"crypto/rand"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/probe"
)

// A name the directory does not hold must cost what a user's wrong password
// costs, or timing tells which names exist. The wrong password costs a
// search that finds the entry, a connection and a refused bind; an unknown
// name costs the search, then decoyBind repeats the connection and the bind,
// so the round trips and TLS handshakes match whatever the network does.
// What the directory spends on a real entry and not on a missing one
// (reading it, checking a slow hash such as 389-ds's PBKDF2, Active Directory
// forwarding a bad password to its PDC emulator) no request can reproduce
// without touching a real account, which a failed bind may lock out: that
// difference is measured instead (refusals) and waited out.

// decoyDN returns a DN under base that names no entry.
func decoyDN(base string) string {
	return "cn=tollgate-no-such-user-" + rand.Text() + "," + base
}

// decoyBind spends what the bind of a user with a wrong password spends, for
// a name the directory does not hold: a connection of its own and a bind as
// decoyDN. slapd and Active Directory refuse it with invalidCredentials, as
// they refuse a wrong password (AD's diagnostic says 525 instead of 52e; it
// is never shown). The bind carries a filler of the password's length, never
// the password: a name the directory does not hold, or one another connector
// refused, has no business there. Then it waits what refusals says a real
// entry costs more. start is when the login began. It returns only the errors
// that make a user bind unavailable.
func (c *Connector) decoyBind(ctx context.Context, start time.Time, password string) error {
	done := probe.Start(c.cfg.Probe)
	err := c.decoyBindOnce(ctx, password)
	done(ctx, failure(err))
	if err != nil {
		return err
	}
	c.refusals.add(false, time.Since(start))
	wait(ctx, min(c.refusals.extra(), c.cfg.Timeout))
	return nil
}

func (c *Connector) decoyBindOnce(ctx context.Context, password string) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return &unavailableError{"connect", err}
	}
	err = conn.Bind(c.decoyDN, strings.Repeat("x", len(password)))
	conn.Close()
	if err != nil && !isLDAPResult(err) {
		return &unavailableError{"bind", err}
	}
	return nil
}

// timerSlack is how late a timer may fire: with nothing else to run, Go's
// runtime sleeps in whole milliseconds, too coarse for the few hundred
// microseconds a directory on a near network differs by.
const timerSlack = 2 * time.Millisecond

// wait waits d or until ctx ends: on a timer up to the last timerSlack, then
// yielding in a loop, which costs at most that much processor time.
func wait(ctx context.Context, d time.Duration) {
	end := time.Now().Add(d)
	if d > timerSlack {
		t := time.NewTimer(d - timerSlack)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
	for time.Now().Before(end) && ctx.Err() == nil {
		runtime.Gosched()
	}
}

// Decoy implements identity.Decoy: the search and the decoy bind that Login
// spends on a name the directory does not hold. Errors are dropped: the
// caller has its answer already.
func (c *Connector) Decoy(ctx context.Context, user, password string) {
	start := time.Now()
	_, _, _ = c.findUser(ctx, c.userFilter(user))
	_ = c.decoyBind(ctx, start, password)
}

// refusals remembers how long the last refusals took, of real entries
// (known) and of decoys before their wait, to learn how much longer the
// directory takes over a real entry. Medians of the last few, so one slow
// answer moves nothing.
type refusals struct {
	mu           sync.Mutex
	known, decoy []time.Duration // the last refusalWindow, oldest first
}

// refusalWindow is how many refusals of each kind are remembered, and
// refusalsNeeded how many must be seen before their medians are trusted.
const refusalWindow, refusalsNeeded = 15, 3

func (r *refusals) add(known bool, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.decoy
	if known {
		s = &r.known
	}
	if len(*s) == refusalWindow {
		*s = (*s)[1:]
	}
	*s = append(*s, d)
}

// extra is how much longer a real entry's refusal takes than a decoy's: 0
// until a few of both have been seen.
func (r *refusals) extra() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.known) < refusalsNeeded || len(r.decoy) < refusalsNeeded {
		return 0
	}
	return max(median(r.known)-median(r.decoy), 0)
}

func median(s []time.Duration) time.Duration {
	sorted := slices.Sorted(slices.Values(s))
	return sorted[(len(sorted)-1)/2]
}
