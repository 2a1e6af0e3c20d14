package broker_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/broker"
)

// outcomeRecorder waits for each request's outcome as the OPA engine's
// decision log does (authz.OnOutcome) and sends it on got; err, when set,
// is its answer instead of next's.
type outcomeRecorder struct {
	next authz.Authorizer
	err  error
	got  chan authz.Outcome
}

func (r *outcomeRecorder) Authorize(ctx context.Context, in authz.Input) (authz.Decision, error) {
	if !authz.OnOutcome(ctx, func(o authz.Outcome) { r.got <- o }) {
		return authz.Decision{}, errors.New("the broker reports no outcome")
	}
	if r.err != nil {
		return authz.Decision{}, r.err
	}
	return r.next.Authorize(ctx, in)
}

func recordOutcomes(rec *outcomeRecorder) func(*broker.Options) {
	return func(o *broker.Options) { rec.next, o.Authorizer = o.Authorizer, rec }
}

// outcome is the one outcome reported for the last request.
func (r *outcomeRecorder) outcome(t *testing.T) authz.Outcome {
	t.Helper()
	select {
	case o := <-r.got:
		select {
		case again := <-r.got:
			t.Fatalf("two outcomes for one request: %+v, %+v", o, again)
		case <-time.After(50 * time.Millisecond):
		}
		return o
	case <-time.After(5 * time.Second):
		t.Fatal("no outcome reported within 5s")
	}
	return authz.Outcome{}
}

func jti(t *testing.T, token string) string {
	t.Helper()
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil || c.ID == "" {
		t.Fatalf("access token %q: no jti (%v)", token, err)
	}
	return c.ID
}

// TestDecisionOutcomeIsTheIssuedTokensID: the policy learns, after its
// decision, the jti of the token the client received; nothing for a
// request refused without a token.
func TestDecisionOutcomeIsTheIssuedTokensID(t *testing.T) {
	rec := &outcomeRecorder{got: make(chan authz.Outcome, 4)}
	f := newFixture(t, recordOutcomes(rec))
	a := f.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", basic("alice", "alice-secret"))
	if a.status != http.StatusOK {
		t.Fatalf("alice: %d %s", a.status, a.raw)
	}
	if o, want := rec.outcome(t), jti(t, a.body["token"].(string)); o != (authz.Outcome{TokenID: want}) {
		t.Errorf("outcome %+v, want token id %s", o, want)
	}

	rec.err = authz.ErrNoPolicy
	if a := f.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", basic("alice", "alice-secret")); a.status != http.StatusServiceUnavailable {
		t.Fatalf("without a policy: %d %s", a.status, a.raw)
	}
	if o := rec.outcome(t); o != (authz.Outcome{}) {
		t.Errorf("a refused request's outcome: %+v, want none", o)
	}
}

// TestDecisionOutcomeNamesTheLoginSession: a refresh grant on a device-login
// session reports the session's id with the token's.
func TestDecisionOutcomeNamesTheLoginSession(t *testing.T) {
	rec := &outcomeRecorder{got: make(chan authz.Outcome, 4)}
	d := newDeviceFixture(t, &fakeIdP{revalidate: time.Hour}, recordOutcomes(rec))
	rt, sid := d.loginSession(t)
	a := d.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {svcName}, "scope": {"repository:team/app:pull"}})
	if a.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", a.status, a.raw)
	}
	if o, want := rec.outcome(t), (authz.Outcome{TokenID: jti(t, a.body["token"].(string)), SessionID: sid}); o != want {
		t.Errorf("outcome %+v, want %+v", o, want)
	}
}
