package policies

import (
	"net/http"
	"net/url"
	"regexp"
	"sync"

	"github.com/tollgate/tollgate/bundles"
)

// maxRealms bounds the token realms one service may name.
const maxRealms = 8

// credentialGuard keeps a service's credentials (Authorization and the
// service's own headers) with the service's origin and the token realms
// that origin names over https. OPA's OCI downloader sets them on every
// request it makes: a token realm on any host, over plain http too, and
// the hop after a redirect. A realm named in a 401 challenge from the
// service itself is how the registry token protocol works (docker sends
// its credentials there as well), so an https realm keeps them.
type credentialGuard struct {
	base    http.RoundTripper
	service string // bundles.Origin of the service's URL
	headers []string

	mu     sync.Mutex
	realms map[string]bool // https origins the service named as its token realm
}

func newCredentialGuard(base http.RoundTripper, serviceURL string, headers []string) *credentialGuard {
	if base == nil {
		base = http.DefaultTransport
	}
	g := &credentialGuard{base: base, headers: headers, realms: map[string]bool{}}
	if u, err := url.Parse(serviceURL); err == nil {
		g.service = bundles.Origin(u)
	}
	return g
}

func (g *credentialGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	o := bundles.Origin(req.URL)
	if o != g.service && !g.isRealm(o) {
		req = g.withoutCredentials(req)
	}
	resp, err := g.base.RoundTrip(req)
	if err == nil && o == g.service && resp.StatusCode == http.StatusUnauthorized {
		g.learn(resp.Header.Values("WWW-Authenticate"))
	}
	return resp, err
}

// withoutCredentials is req without the service's credentials (a copy
// when it carried any: a RoundTripper must not change its request).
func (g *credentialGuard) withoutCredentials(req *http.Request) *http.Request {
	names := append([]string{"Authorization"}, g.headers...)
	for _, h := range names {
		if req.Header.Get(h) != "" {
			req = req.Clone(req.Context())
			for _, h := range names {
				req.Header.Del(h)
			}
			return req
		}
	}
	return req
}

var realmParam = regexp.MustCompile(`(?i)\brealm="([^"]*)"`)

// learn records the https token realms of the service's challenges.
func (g *credentialGuard) learn(challenges []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range challenges {
		for _, m := range realmParam.FindAllStringSubmatch(c, -1) {
			u, err := url.Parse(m[1])
			if err != nil || u.Scheme != "https" || u.Host == "" || len(g.realms) >= maxRealms {
				continue
			}
			g.realms[bundles.Origin(u)] = true
		}
	}
}

func (g *credentialGuard) isRealm(origin string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.realms[origin]
}
