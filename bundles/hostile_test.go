package bundles_test

// Bundle servers that misbehave: redirects that downgrade or leave the
// configured origin, compression bombs, URLs carrying credentials.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/test/testenv"
)

func TestFetchRefusesARedirectFromHTTPSToHTTP(t *testing.T) {
	data := build(t, policyDir(t, "pull"), "r1", nil)
	var plainGets atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainGets.Add(1)
		w.Write(data)
	}))
	defer plain.Close()
	secure := httptest.NewTLSServer(http.RedirectHandler(plain.URL+"/b.tar.gz", http.StatusFound))
	defer secure.Close()

	src := &bundles.Source{Location: secure.URL + "/b.tar.gz", Client: secure.Client()}
	_, _, err := src.Fetch(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "https to http") {
		t.Fatalf("fetch redirected from https to http: %v, want an error naming the downgrade", err)
	}
	if plainGets.Load() != 0 {
		t.Fatalf("the http server was asked %d times after the downgrade", plainGets.Load())
	}
}

// TestBearerTokenStaysWithTheOrigin: over https, the token goes to the
// configured origin only, and not again once a redirect has left it, even
// for a hop back to the origin.
func TestBearerTokenStaysWithTheOrigin(t *testing.T) {
	data := build(t, policyDir(t, "pull"), "r1", nil)
	var mu sync.Mutex
	var seen []string // "server path: Authorization" for each request
	record := func(name string, next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, name+" "+r.URL.Path+": "+r.Header.Get("Authorization"))
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}
	serve := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(data) })
	originMux := http.NewServeMux()
	origin := httptest.NewTLSServer(record("origin", originMux))
	defer origin.Close()
	otherMux := http.NewServeMux()
	other := httptest.NewTLSServer(record("other", otherMux)) // same host, another port
	defer other.Close()
	originMux.Handle("/b.tar.gz", serve)
	originMux.Handle("/same", http.RedirectHandler("/b.tar.gz", http.StatusFound))
	originMux.Handle("/away", http.RedirectHandler(other.URL+"/b.tar.gz", http.StatusFound))
	originMux.Handle("/away-and-back", http.RedirectHandler(other.URL+"/back", http.StatusFound))
	otherMux.Handle("/b.tar.gz", serve)
	otherMux.Handle("/back", http.RedirectHandler(origin.URL+"/b.tar.gz", http.StatusFound))

	for path, want := range map[string]string{
		"/same":          "origin /same: Bearer t0ken, origin /b.tar.gz: Bearer t0ken",
		"/away":          "origin /away: Bearer t0ken, other /b.tar.gz: ",
		"/away-and-back": "origin /away-and-back: Bearer t0ken, other /back: , origin /b.tar.gz: ",
	} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		src := &bundles.Source{Location: origin.URL + path, Client: origin.Client(), BearerToken: "t0ken"}
		if _, _, err := src.Fetch(context.Background(), ""); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		mu.Lock()
		if got := strings.Join(seen, ", "); got != want {
			t.Errorf("%s: requests %q, want %q", path, got, want)
		}
		mu.Unlock()
	}
}

// TestBundleBombsAreRefusedWithinTheLimits: a tarball that expands past
// the default limits (64 MiB, 10,000 files) is refused, from a URL or a
// file, with or without required signatures, without the process
// allocating more than a fraction of the limit.
func TestBundleBombsAreRefusedWithinTheLimits(t *testing.T) {
	_, public := keyPair(t)
	if bundles.DefaultMaxBytes != 64<<20 || bundles.DefaultMaxFiles != 10_000 {
		t.Fatal("testenv.HostileBundles are sized for the limits of 64 MiB and 10,000 files")
	}
	bombs := testenv.HostileBundles(t)
	const most = 16 << 20 // a quarter of the size limit
	for _, bc := range bombs {
		t.Logf("%s: %d bytes compressed", bc.Name, len(bc.Data))
		bs := &bundleServer{}
		bs.publish(bc.Data, `"bomb"`)
		ts := httptest.NewServer(bs)
		defer ts.Close()
		for _, where := range []string{"url", "file"} {
			for _, signed := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/signatures required %v", bc.Name, where, signed), func(t *testing.T) {
					src := &bundles.Source{Location: ts.URL + "/bundle.tar.gz"}
					if where == "file" {
						src.Location = writeFile(t, bc.Data)
					}
					if signed {
						src.Verify = verifier(t, public)
					}
					var err error
					grew := testenv.HeapGrowth(func() { _, _, err = src.Fetch(context.Background(), "") })
					t.Logf("the heap grew by %d KiB during the fetch: %v", grew>>10, err)
					if err == nil || !strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), bc.Want) {
						t.Errorf("err %v, want one naming the limit on %s", err, bc.Want)
					}
					if grew > most {
						t.Errorf("the heap grew by %d MiB during the fetch, want at most %d MiB", grew>>20, most>>20)
					}
				})
			}
		}
	}
}

// TestFetchErrorsDoNotShowURLSecrets: user information and query strings
// (pre-signed signatures) never appear in an error, whatever failed.
func TestFetchErrorsDoNotShowURLSecrets(t *testing.T) {
	bs := &bundleServer{}
	ts := httptest.NewServer(bs)
	defer ts.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	withSecrets := func(hostport string) string {
		return "http://user:s3cret@" + hostport + "/b.tar.gz?X-Amz-Signature=5ig-abc"
	}
	for _, c := range []struct {
		name, location string
		publish        []byte
		status         int
	}{
		{"connection refused", withSecrets(closed), nil, 0},
		{"server error", withSecrets(strings.TrimPrefix(ts.URL, "http://")), nil, http.StatusBadGateway},
		{"not a bundle", withSecrets(strings.TrimPrefix(ts.URL, "http://")), []byte("garbage"), 0},
		{"broken policy", withSecrets(strings.TrimPrefix(ts.URL, "http://")), tamper(t, build(t, policyDir(t, "pull"), "r1", nil), "authz.rego", func([]byte) []byte {
			return []byte("package registry.authz\n\nallowed contains x if {\n")
		}), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.publish != nil {
				bs.publish(c.publish, `"x"`)
			} else {
				bs.fail(c.status)
			}
			_, _, err := (&bundles.Source{Location: c.location}).Fetch(context.Background(), "")
			if err == nil {
				t.Fatal("fetch succeeded")
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "5ig-abc") {
				t.Fatalf("the error shows the URL's secrets: %v", err)
			}
		})
	}
}

// TestSchemesAreCaseInsensitive: HTTPS:// is a URL to fetch (and redact),
// not a local path whose name would be shown whole.
func TestSchemesAreCaseInsensitive(t *testing.T) {
	for in, want := range map[string]bool{
		"HTTPS://host/b.tar.gz": true, "Http://host/b.tar.gz": true, "https://host/b": true,
		"/etc/tollgate/policy": false, "ftp://host/b.tar.gz": false, "https:/host": false,
	} {
		if got := bundles.IsURL(in); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:s3cret@host/b.tar.gz?X-Amz-Signature=5ig-abc": "https://xxxxx@host/b.tar.gz?xxxxx",
		"https://tok3n@host/b.tar.gz":                               "https://xxxxx@host/b.tar.gz",
		"https://host:8443/bundles/b.tar.gz":                        "https://host:8443/bundles/b.tar.gz",
		"http://host/b.tar.gz#s3cret":                               "http://host/b.tar.gz",
		"/etc/tollgate/policy":                                      "/etc/tollgate/policy",
		"./policy?x":                                                "./policy?x",
		"https://host/%zz?s3cret":                                   "(a URL that does not parse)",
		"HTTPS://user:s3cret@host/b.tar.gz?sig=5ig":                 "https://xxxxx@host/b.tar.gz?xxxxx",
	} {
		if got := bundles.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every URL in a message is redacted, wherever it stands: quoted by Go's
// url.Error, after a field name, or several in one line.
func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		`Bundle load failed: Get "http://u:***@h:1/b?access_token=QS/x?sig=S": dial tcp h:1: refused`: `Bundle load failed: Get "http://xxxxx@h:1/b?xxxxx": dial tcp h:1: refused`,
		"url=https://u:pw@h/b from 'oci://reg/x?t=1'":                                                 "url=https://xxxxx@h/b from 'oci://reg/x?xxxxx'",
		"no URL here: key=value?x=1":                                                                  "no URL here: key=value?x=1",
	} {
		if got := bundles.RedactURLs(in); got != want {
			t.Errorf("RedactURLs(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}
