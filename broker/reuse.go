package broker

import (
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// MaxTokenReuse is the longest reuse window a service may set.
const MaxTokenReuse = 10 * time.Second

// Bounds of the reuse cache. An entry is served for at most a service's
// window; after that it waits, unused, to be evicted, so the cache holds a
// bounded number of bounded entries: at most about reuseEntries *
// (maxReuseKey + maxReuseToken), 6 MiB, and about 2.5 MiB for common
// tokens. A request with more scopes than fit is signed every time. The
// entries that matter are the few hot ones of a storm, which the LRU keeps.
const (
	reuseEntries  = 1024
	maxReuseKey   = 2048 // bytes of claims identifying a token
	maxReuseToken = 4096 // bytes of a signed token worth keeping
)

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
	id   string        // the token's jti
	iat  time.Time     // wall clock
}

func newTokenReuse() *tokenReuse {
	c, _ := lru.New[string, reusedToken](reuseEntries) // size > 0: cannot fail
	return &tokenReuse{cache: c}
}

// reuseKey identifies the claims of an access token, leaving out the times
// and the id, or returns "" when they are too long to keep. Strings are
// length-prefixed, so no subject or repository name can make two different
// claim sets collide.
func reuseKey(svc *Service, k *Key, subject string, ttl time.Duration, access []AccessEntry) string {
	n := len(svc.Name) + len(k.ID) + len(subject) + 40
	for _, a := range access {
		n += len(a.Type) + len(a.Name) + 12
		for _, act := range a.Actions {
			n += len(act) + 4
		}
	}
	if n > maxReuseKey {
		return ""
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

// get returns the token kept for these claims if k signed it no more than
// window before now. Age is wall-clock time: a clock stepped back, or a
// machine resumed from a pause (which the monotonic clock does not see),
// never gets an old token.
func (t *tokenReuse) get(key string, k *Key, now time.Time, window time.Duration) (reusedToken, bool) {
	e, ok := t.cache.Get(key)
	if !ok || e.key != k {
		return reusedToken{}, false
	}
	if age := now.Round(0).Sub(e.iat); age < 0 || age >= window {
		return reusedToken{}, false
	}
	return e, true
}

// put keeps a freshly signed token (without a refresh token; iat on the
// wall clock) under key.
func (t *tokenReuse) put(key string, e reusedToken) {
	if len(e.resp.AccessToken) > maxReuseToken {
		return
	}
	t.cache.Add(key, e)
}
