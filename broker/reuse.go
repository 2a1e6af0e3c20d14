package broker

import (
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// reuseEntries bounds the tokens kept for reuse. An entry lives for at most
// a service's reuse window (seconds), so this only needs to hold the
// distinct (subject, grant) pairs of that long; beyond it, the oldest go.
const reuseEntries = 8192

// maxTokenReuse is the longest reuse window a service may set.
const maxTokenReuse = 10 * time.Second

// tokenReuse hands out the access token signed a moment ago for the same
// service, key, subject, lifetime and granted access, instead of signing
// the same claims again. Signing is most of the cost of a token (RS256
// almost all of it), and a cold-start storm asks for the same token many
// times a second: every node pulling the same public image, every job of a
// pipeline pulling its base image as one robot.
//
// Only signing is skipped. Every request is still authenticated, throttled,
// authorized by the policy and logged; the token served says exactly what a
// fresh one would (the same `access`, `sub`, `aud`, `iss`), its `iat`,
// `exp` and `jti` are those of the first request, and the response's
// issued_at and expires_in match them. A changed grant, subject, lifetime or
// signing key is a different entry. See docs/decisions/0011-token-reuse.md.
type tokenReuse struct {
	cache *lru.Cache[string, reusedToken]
}

type reusedToken struct {
	key  *Key
	resp tokenResponse // without a refresh token
	iat  time.Time
}

func newTokenReuse() *tokenReuse {
	c, _ := lru.New[string, reusedToken](reuseEntries) // size > 0: cannot fail
	return &tokenReuse{cache: c}
}

// reuseKey identifies the claims of an access token, leaving out the times
// and the id. Strings are length-prefixed, so no subject or repository name
// can make two different claim sets collide.
func reuseKey(svc *Service, k *Key, subject string, ttl time.Duration, access []AccessEntry) string {
	n := len(svc.Name) + len(k.ID) + len(subject) + 40
	for _, a := range access {
		n += len(a.Type) + len(a.Name) + 12
		for _, act := range a.Actions {
			n += len(act) + 4
		}
	}
	b := make([]byte, 0, n)
	str := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	str(svc.Name)
	str(k.ID)
	str(subject)
	b = strconv.AppendInt(b, int64(ttl), 10)
	b = append(b, ';')
	for _, a := range access {
		str(a.Type)
		str(a.Name)
		b = strconv.AppendInt(b, int64(len(a.Actions)), 10)
		b = append(b, ';')
		for _, act := range a.Actions {
			str(act)
		}
	}
	return string(b)
}

// get returns the response of a token for these claims signed by k no more
// than window before now.
func (t *tokenReuse) get(key string, k *Key, now time.Time, window time.Duration) (tokenResponse, bool) {
	e, ok := t.cache.Get(key)
	if !ok || e.key != k {
		return tokenResponse{}, false
	}
	age := now.Sub(e.iat)
	if age < 0 || age >= window {
		return tokenResponse{}, false
	}
	return e.resp, true
}

func (t *tokenReuse) put(key string, k *Key, iat time.Time, resp tokenResponse) {
	resp.RefreshToken = ""
	t.cache.Add(key, reusedToken{key: k, resp: resp, iat: iat})
}
