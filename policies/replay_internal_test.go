package policies

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/scope"
)

// A recorded result with many allowed entries, for a request with many
// scopes, is matched in linear time: the log is input, and the quadratic
// match took 20 s of CPU for a 2.7 MB line of 20,000 scopes. Not a timed
// test against a wall-clock budget (a loaded CI machine misses those): the
// fastest of a few runs at 40 times the size must take well under 40 times
// 40 times as long; linear is about 40, quadratic 1,600.
func TestReplayMatchesGrantsToScopesInLinearTime(t *testing.T) {
	const small, large = 1000, 40000
	if ratio := fastestMatch(t, large).Seconds() / fastestMatch(t, small).Seconds(); ratio > 300 {
		t.Errorf("matching %d grants took %.0f times as long as %d: quadratic", large, ratio, small)
	}
}

// fastestMatch is the fastest of five matches of n grants to n scopes.
func fastestMatch(t *testing.T, n int) time.Duration {
	t.Helper()
	in := &authz.Input{Service: "registry.test"}
	allowed := make([]allowedEntry, 0, n)
	for i := range n {
		name := fmt.Sprintf("library/r%d", i)
		in.Scopes = append(in.Scopes, scope.Scope{Type: "repository", Name: name, Actions: []string{"pull", "push"}})
		allowed = append(allowed, allowedEntry{Type: "repository", Name: name, Action: "pull"})
	}
	result, _ := json.Marshal(allowed)
	fastest := time.Duration(1<<63 - 1)
	for range 5 {
		start := time.Now()
		granted, ok, err := loggedDecision{Input: in, Result: result}.granted(1)
		fastest = min(fastest, time.Since(start))
		if err != nil || !ok || len(granted) != n || !slices.Equal(granted[n-1], []string{"pull"}) {
			t.Fatalf("recorded grants not read back: %v %v, %d scopes", err, ok, len(granted))
		}
	}
	return fastest
}
