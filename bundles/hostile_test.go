package bundles_test

// Bundle servers that misbehave: redirects that downgrade or leave the
// configured origin, compression bombs, URLs carrying credentials.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/bundles"
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

// bomb is a gzipped tarball of n zero-filled files of mib MiB each. It is
// made of gzip members, which gzip readers join: the tar headers, and one
// MiB of zeros compressed once (to about 1 KiB) and repeated, so that even
// under -race it takes milliseconds to make.
func bomb(t *testing.T, n, mib int) []byte {
	t.Helper()
	gz := func(w io.Writer, data []byte) {
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var zeroMiB, out, pending bytes.Buffer
	gz(&zeroMiB, make([]byte, 1<<20))
	flush := func() {
		if pending.Len() > 0 {
			gz(&out, pending.Bytes())
			pending.Reset()
		}
	}
	for i := range n {
		// A tar.Writer of its own writes the header only: the content
		// follows as compressed zeros, never written through it.
		h := &tar.Header{Name: fmt.Sprintf("/z/%d.bin", i), Mode: 0o644, Size: int64(mib) << 20}
		if err := tar.NewWriter(&pending).WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		for range mib {
			flush()
			out.Write(zeroMiB.Bytes())
		}
	}
	pending.Write(make([]byte, 1024)) // the end of the archive
	flush()
	return out.Bytes()
}

// heapGrowth returns how far the heap (its objects, live or not yet
// collected) grew above its level before fn, sampled while fn ran. Bytes
// allocated in total would overstate it: under -race, sync.Pool keeps
// nothing and io.Discard allocates a buffer on every copy.
func heapGrowth(fn func()) uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	runtime.GC()
	base := read()
	peak := base
	done, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Microsecond):
				peak = max(peak, read())
			}
		}
	}()
	fn()
	close(done)
	<-sampled
	return max(peak, read()) - base
}

// TestBundleBombsAreRefusedWithinTheLimits: a tarball that expands past
// the default limits (64 MiB, 10,000 files) is refused, from a URL or a
// file, with or without required signatures, without the process
// allocating more than a fraction of the limit.
func TestBundleBombsAreRefusedWithinTheLimits(t *testing.T) {
	_, public := keyPair(t)
	bombs := []struct {
		name string
		data []byte
		want string
	}{
		// Each file is under the 64 MiB a single file may have.
		{"96 MiB of zeros", bomb(t, 2, 48), "bytes uncompressed"},
		{"10001 empty files", bomb(t, bundles.DefaultMaxFiles+1, 0), "files"},
	}
	const most = 16 << 20 // a quarter of the size limit
	for _, bc := range bombs {
		t.Logf("%s: %d bytes compressed", bc.name, len(bc.data))
		bs := &bundleServer{}
		bs.publish(bc.data, `"bomb"`)
		ts := httptest.NewServer(bs)
		defer ts.Close()
		for _, where := range []string{"url", "file"} {
			for _, signed := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/signatures required %v", bc.name, where, signed), func(t *testing.T) {
					src := &bundles.Source{Location: ts.URL + "/bundle.tar.gz"}
					if where == "file" {
						src.Location = writeFile(t, bc.data)
					}
					if signed {
						src.Verify = verifier(t, public)
					}
					var err error
					grew := heapGrowth(func() { _, _, err = src.Fetch(context.Background(), "") })
					t.Logf("the heap grew by %d KiB during the fetch: %v", grew>>10, err)
					if err == nil || !strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), bc.want) {
						t.Errorf("err %v, want one naming the limit on %s", err, bc.want)
					}
					if grew > most {
						t.Errorf("the heap grew by %d MiB during the fetch, want at most %d MiB", grew>>20, most>>20)
					}
				})
			}
		}
	}
}

// TestPollerDoesNotDownloadARefusedBundleAgain: a refused bundle is not
// fetched again while the server offers the same ETag, and the poller backs
// off; a new version is fetched at once.
func TestPollerDoesNotDownloadARefusedBundleAgain(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"bomb", bomb(t, 2, 48), "limit"},
		{"not a tarball", []byte("garbage"), "archive read failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bs := &bundleServer{}
			bs.publish(c.data, `"refused"`)
			ts := httptest.NewServer(bs)
			defer ts.Close()
			p := &bundles.Poller{
				Source:   &bundles.Source{Location: ts.URL},
				MinDelay: 10 * time.Millisecond,
				MaxDelay: 40 * time.Millisecond,
				Apply:    func(context.Context, *bundles.Bundle) error { return nil },
			}
			ctx := context.Background()
			for range 3 {
				if err := p.Once(ctx); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("poll: %v, want an error containing %q", err, c.want)
				}
			}
			if n := bs.full.Load(); n != 1 {
				t.Fatalf("the refused bundle was downloaded %d times, want once", n)
			}
			if st := p.Status(); st.Failures != 3 || st.Revision != "" {
				t.Fatalf("status %+v, want 3 failures and no revision", st)
			}
			if d := p.Delay(); d < p.MaxDelay/2 {
				t.Fatalf("delay after three refusals %v, want a backoff to at least %v", d, p.MaxDelay/2)
			}
			bs.publish(build(t, policyDir(t, "pull"), "r2", nil), `"r2"`)
			if err := p.Once(ctx); err != nil {
				t.Fatal(err)
			}
			if st := p.Status(); st.Revision != "r2" || st.Failures != 0 {
				t.Fatalf("status after a good bundle: %+v", st)
			}
		})
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
