package broker

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// Identical requests that miss the reuse cache together must wait for one
// signature, not sign once each: on an RSA key (about a millisecond per
// signature) eight requests released at once would otherwise all sign.
func TestTokenReuseSignsOnceForRequestsThatMissTogether(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8)) // eight requests really at once, even on two cores
	now := time.Now()
	keyPEM, certPEM, err := GenerateKey(KeyRSA, "test", now.Add(-time.Hour), time.Hour*2)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKeyPair(keyPEM, certPEM)
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{Name: "registry.test", Issuer: "test", TokenTTL: 5 * time.Minute, MaxTokenTTL: time.Hour, TokenReuse: time.Second, Keys: &KeySet{keys: []*Key{k}}}
	s, err := New(Options{Services: []*Service{svc}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	access := []AccessEntry{{Type: "repository", Name: "public/x", Actions: []string{"pull"}}}
	const n = 8
	var (
		start  = make(chan struct{})
		wg     sync.WaitGroup
		toks   [n]reusedToken
		reused [n]bool
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok, r, err := s.accessToken(svc, k, "", access, now, svc.TokenTTL)
			if err != nil {
				t.Error(err)
			}
			toks[i], reused[i] = tok, r
		}()
	}
	close(start)
	wg.Wait()
	signed, ids := 0, map[string]string{} // token -> jti
	for i := range n {
		tok := toks[i].resp.Token
		if id, seen := ids[tok]; seen && id != toks[i].id {
			t.Errorf("request %d: token_id %s, but its token has %s", i, toks[i].id, id)
		}
		ids[tok] = toks[i].id
		if !reused[i] {
			signed++
		}
	}
	if signed != 1 || len(ids) != 1 {
		t.Fatalf("%d of %d identical requests signed, %d distinct tokens", signed, n, len(ids))
	}
}
