package e2e

import "testing"

// One broker serves both registries, each as its own service: a token is
// addressed (aud) to one of them and must not be replayed at the other.
func TestTokenForOneServiceIsRefusedByTheOther(t *testing.T) {
	e := newEnv(t)
	e.each(t, func(t *testing.T, r *registry) {
		for _, other := range e.regs {
			if other == r {
				continue
			}
			foreign := e.b.getToken(t, other.flavor.service, "alice", "repository:team/app:pull")
			do(t, "GET", r.url("/v2/"), foreign, nil).expectInvalidToken(t)
		}
		// Control: a token for the registry's own service is accepted.
		do(t, "GET", r.url("/v2/"), e.b.getToken(t, r.flavor.service, "alice", "repository:team/app:pull"), nil).expect(t, 200)
	})
}
