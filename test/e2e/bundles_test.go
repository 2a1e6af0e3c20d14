package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// bundleServer is a remote bundle server on loopback: it serves the bundle
// published last, with its revision as ETag, or a failure status.
type bundleServer struct {
	url string

	mu     sync.Mutex
	data   []byte
	etag   string
	status int
	gets   atomic.Int64
}

func startBundleServer(t *testing.T) *bundleServer {
	t.Helper()
	s := &bundleServer{status: http.StatusServiceUnavailable}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.url = fmt.Sprintf("http://localhost:%d/bundles/authz.tar.gz", ln.Addr().(*net.TCPAddr).Port)
	return s
}

func (s *bundleServer) publish(data []byte, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.etag, s.status = data, `"`+etag+`"`, http.StatusOK
}

func (s *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.gets.Add(1)
	s.mu.Lock()
	data, etag, status := s.data, s.etag, s.status
	s.mu.Unlock()
	switch {
	case status != http.StatusOK:
		http.Error(w, "bundle server unavailable", status)
	case r.Header.Get("If-None-Match") == etag:
		w.WriteHeader(http.StatusNotModified)
	default:
		w.Header().Set("ETag", etag)
		w.Write(data)
	}
}

// waitFetches waits until the broker has asked the server n more times.
func (s *bundleServer) waitFetches(t *testing.T, n int64) {
	t.Helper()
	want := s.gets.Load() + n
	for deadline := time.Now().Add(10 * time.Second); s.gets.Load() < want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the broker stopped polling the bundle server (%d requests)", s.gets.Load())
		}
	}
}

// tarball writes a gzipped bundle from file contents, as any CI job could;
// it is how a broken bundle, which no build tool would produce, is made.
func tarball(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "/" + name, Mode: 0o644, Size: int64(len(content))}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, content)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

// revisionBundle is revision k of a policy that grants pull on rk/app only
// when its data says k too: a decision that mixed the policy of one
// revision with the data of another would grant nothing.
func revisionBundle(t *testing.T, k int) []byte {
	t.Helper()
	return buildBundle(t, map[string]string{
		".manifest": fmt.Sprintf(`{"revision": "r%d"}`, k),
		"authz.rego": fmt.Sprintf(`package registry.authz

allowed contains {"type": "repository", "name": s.name, "action": "pull"} if {
	data.rev == %d
	some s in input.scopes
	s.name == "r%d/app"
}
`, k, k),
		"data.json": fmt.Sprintf(`{"rev": %d}`, k),
	})
}

func readyz(t *testing.T, b *broker) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(b.url("/readyz"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestRemoteBundleRevisionsGoLiveUnderLoad: while clients ask for tokens
// without pause, the bundle server publishes three revisions, the second of
// them broken. No request fails, every decision comes from one whole
// revision, the broken one is never served, and each good one is live within
// 2 seconds of being published.
func TestRemoteBundleRevisionsGoLiveUnderLoad(t *testing.T) {
	bs := startBundleServer(t)
	bs.publish(revisionBundle(t, 1), "r1")
	b := startBrokerWith(t, brokerOptions{
		policySource: bs.url,
		policy:       "  polling: {min_delay: 100ms, max_delay: 300ms, timeout: 2s}\n",
	})
	good2, good4 := revisionBundle(t, 2), revisionBundle(t, 4)
	broken3 := tarball(t, map[string]string{
		".manifest":  `{"revision": "r3"}`,
		"authz.rego": "package registry.authz\n\nallowed contains {\"type\": \"repository\", \"name\": \"r3/app\", \"action\": \"pull\"} if undefined_function(1)\n",
		"data.json":  `{"rev": 3}`,
	})

	type observation struct {
		start, end time.Time
		rev        int // 0: no grant at all
		err        string
	}
	var (
		mu   sync.Mutex
		seen []observation
	)
	q := url.Values{"service": {flavors[0].service}}
	for k := 1; k <= 4; k++ {
		q.Add("scope", fmt.Sprintf("repository:r%d/app:pull", k))
	}
	tokenURL := b.url("/token?" + q.Encode())
	ctx, stop := context.WithTimeout(context.Background(), 60*time.Second)
	defer stop()
	var wg sync.WaitGroup
	const clients, maxRequests = 4, 200_000 // bounded in count and in time
	var sent atomic.Int64
	loadStarted := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && sent.Add(1) <= maxRequests {
				o := observation{start: time.Now()}
				resp, err := httpClient.Get(tokenURL)
				if err != nil {
					o.err = err.Error()
				} else {
					var body tokenResponse
					raw, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &body) != nil {
						o.err = fmt.Sprintf("%s: %s", resp.Status, raw)
					} else if claims, err := parseToken(body.Token); err != nil {
						o.err = err.Error()
					} else {
						access := claims.Access
						switch {
						case len(access) == 0:
						case len(access) == 1 && len(access[0].Actions) == 1:
							fmt.Sscanf(access[0].Name, "r%d/app", &o.rev)
						default:
							o.err = fmt.Sprintf("a mix of revisions in one token: %+v", access)
						}
					}
				}
				o.end = time.Now()
				mu.Lock()
				seen = append(seen, o)
				mu.Unlock()
			}
		}()
	}
	// firstSeen waits for a response granting revision k and returns when
	// it ended.
	firstSeen := func(k int, published time.Time) time.Time {
		t.Helper()
		for time.Since(published) < 10*time.Second {
			mu.Lock()
			for _, o := range seen {
				if o.rev == k && o.start.After(published) {
					mu.Unlock()
					t.Logf("revision r%d first granted %v after it was published", k, o.end.Sub(published).Round(time.Millisecond))
					if o.end.Sub(published) > 2*time.Second {
						t.Errorf("revision r%d took %v to go live, want at most 2s", k, o.end.Sub(published))
					}
					return o.end
				}
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("revision r%d never went live", k)
		return time.Time{}
	}

	firstSeen(1, loadStarted)
	published := time.Now()
	bs.publish(good2, "r2")
	live2 := firstSeen(2, published)

	bs.publish(broken3, "r3")
	bs.waitFetches(t, 3) // three polls at least: the broken revision was fetched and refused
	if code, body := readyz(t, b); code != http.StatusOK || !strings.Contains(body, "bundle tollgate: revision r2") || !strings.Contains(body, "reload failing") {
		t.Errorf("/readyz while r3 is broken: %d\n%s", code, body)
	}

	published = time.Now()
	bs.publish(good4, "r4")
	live4 := firstSeen(4, published)
	time.Sleep(300 * time.Millisecond) // some load on r4 too
	stop()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	counts := map[int]int{}
	for _, o := range seen {
		counts[o.rev]++
		switch {
		case o.err != "":
			t.Errorf("request failed during reloads: %s", o.err)
		case o.rev == 3:
			t.Errorf("the broken revision r3 was served")
		case o.rev < 1 || o.rev > 4:
			t.Errorf("a decision from no whole revision (granted r%d)", o.rev)
		case o.rev < 2 && o.start.After(live2), o.rev < 4 && o.start.After(live4):
			t.Errorf("a request started after r%d was live got r%d", map[bool]int{true: 4, false: 2}[o.start.After(live4)], o.rev)
		}
		if t.Failed() {
			break
		}
	}
	t.Logf("%d token requests during the reloads, by revision: %v", len(seen), counts)
	if counts[2] == 0 || counts[4] == 0 {
		t.Errorf("no load on some revision: %v", counts)
	}
}

// TestSignedBundleBuiltByOPA: with policy.signing configured, a bundle
// built and signed by `opa build` loads; a tampered one, or an unsigned one,
// is refused and the last good policy keeps serving.
func TestSignedBundleBuiltByOPA(t *testing.T) {
	opa := testenv.Tool(t, "opa")
	keys := t.TempDir()
	private, public := testenv.WriteES256KeyPair(t, keys)
	bs := startBundleServer(t)

	// The shipped default policy with the test users, signed by opa.
	src := filepath.Join(t.TempDir(), "policy")
	writePolicy(t, src, testPolicyData)
	opaBuild := func(revision, policyData string) []byte {
		t.Helper()
		if err := os.WriteFile(filepath.Join(src, "data.json"), []byte(policyData), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "bundle.tar.gz")
		cmd := exec.Command(opa, "build", "--bundle", ".", "--revision", revision,
			"--signing-key", private, "--signing-alg", "ES256", "-o", out)
		cmd.Dir = src
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("opa build: %v\n%s", err, msg)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	signed1 := opaBuild("v1", testPolicyData)
	bs.publish(signed1, "v1")
	b := startBrokerWith(t, brokerOptions{
		policySource: bs.url,
		policy:       fmt.Sprintf("  polling: {min_delay: 100ms, max_delay: 300ms}\n  signing: {public_key: %q, algorithm: ES256}\n", public),
	})
	carolPulls := func() bool {
		t.Helper()
		return len(decodeToken(t, b.getToken(t, flavors[0].service, "carol", "repository:team/app:pull")).Access) > 0
	}
	if len(decodeToken(t, b.getToken(t, flavors[0].service, "alice", "repository:team/app:pull")).Access) != 1 {
		t.Fatal("the opa-signed bundle does not grant alice her pull")
	}
	if carolPulls() {
		t.Fatal("carol may pull before any change")
	}

	// Tampered: carol made a developer in data.json after signing.
	withCarol := strings.Replace(testPolicyData, `"bob": "guest"`, `"bob": "guest", "carol": "developer"`, 1)
	if withCarol == testPolicyData {
		t.Fatal("test data changed shape: carol was not added")
	}
	signed2 := opaBuild("v2", withCarol)
	tampered := retar(t, signed1, "data.json", withCarol)
	unsigned := retar(t, signed1, ".signatures.json", "")
	for _, c := range []struct{ name, want string }{{"tampered", "digest mismatch"}, {"unsigned", "missing .signatures.json"}} {
		bs.publish(map[string][]byte{"tampered": tampered, "unsigned": unsigned}[c.name], c.name)
		bs.waitFetches(t, 2)
		code, body := readyz(t, b)
		if code != http.StatusOK || !strings.Contains(body, "bundle tollgate: revision v1") || !strings.Contains(body, c.want) {
			t.Errorf("/readyz with a %s bundle published: %d\n%s", c.name, code, body)
		}
		if carolPulls() {
			t.Fatalf("a %s bundle was served", c.name)
		}
	}

	// Properly signed: live.
	bs.publish(signed2, "v2")
	deadline := time.Now().Add(5 * time.Second)
	for !carolPulls() {
		if time.Now().After(deadline) {
			_, body := readyz(t, b)
			t.Fatalf("the signed v2 never went live:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// retar rewrites one file of a bundle tarball (content "" removes it).
func retar(t *testing.T, data []byte, name, content string) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(tr)
		files[strings.TrimPrefix(h.Name, "/")] = string(raw)
	}
	if _, ok := files[name]; !ok {
		t.Fatalf("%s not in the bundle", name)
	}
	if content == "" {
		delete(files, name)
	} else {
		files[name] = content
	}
	return tarball(t, files)
}

// TestBundleServerDownAtStart: the broker starts without a policy, refuses
// every token request with 503 (fail closed), says why on /readyz, and
// serves as soon as the bundle server answers.
func TestBundleServerDownAtStart(t *testing.T) {
	bs := startBundleServer(t) // answers 503 until something is published
	b := startBrokerWith(t, brokerOptions{
		policySource:  bs.url,
		policy:        "  polling: {min_delay: 100ms, max_delay: 300ms}\n",
		startsUnready: true,
	})
	code, body := readyz(t, b)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no policy") || !strings.Contains(body, "503") {
		t.Fatalf("/readyz without a policy: %d\n%s", code, body)
	}
	r := do(t, http.MethodGet, b.url("/token?service="+flavors[0].service+"&scope=repository:r1/app:pull"), "", nil)
	r.expect(t, http.StatusServiceUnavailable)

	bs.publish(revisionBundle(t, 1), "r1")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, _ := readyz(t, b); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			_, body := readyz(t, b)
			t.Fatalf("never ready after the bundle server came back:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok := b.getToken(t, flavors[0].service, "", "repository:r1/app:pull")
	expectAccess(t, tok, []access{{Type: "repository", Name: "r1/app", Actions: []string{"pull"}}})
}

// fail makes the server answer status until something is published.
func (s *bundleServer) fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

// TestBundleURLSecretsNeverShown: a bundle URL's user information and query
// string (a pre-signed URL's signature) appear neither on /readyz, nor in
// the log, nor in `serve --check`, whether the bundle loads or fails to.
func TestBundleURLSecretsNeverShown(t *testing.T) {
	withSecrets := func(u string) string {
		return strings.Replace(u, "http://", "http://user:s3cret@", 1) + "?X-Amz-Signature=5ig-abc"
	}
	secretFree := func(t *testing.T, what, text string) {
		t.Helper()
		if strings.Contains(text, "s3cret") || strings.Contains(text, "5ig-abc") {
			t.Errorf("%s shows the bundle URL's secrets:\n%s", what, text)
		}
	}
	bs := startBundleServer(t)
	bs.publish(revisionBundle(t, 1), "r1")
	b := startBrokerWith(t, brokerOptions{
		policySource: withSecrets(bs.url),
		policy:       "  polling: {min_delay: 100ms, max_delay: 300ms}\n",
	})
	secretFree(t, "serve --check", tollgate(t, "", "serve", "--config", b.config, "--check"))
	_, body := readyz(t, b)
	if !strings.Contains(body, "policy source: http://xxxxx@localhost") {
		t.Errorf("/readyz does not name the source, redacted:\n%s", body)
	}
	secretFree(t, "/readyz with the bundle loaded", body)
	bs.fail(http.StatusBadGateway)
	bs.waitFetches(t, 2)
	_, body = readyz(t, b)
	if !strings.Contains(body, "reload failing") {
		t.Errorf("/readyz does not show the failure:\n%s", body)
	}
	secretFree(t, "/readyz with the bundle server failing", body)

	// Nothing listens there: net/http's own error names the URL.
	down := withSecrets(fmt.Sprintf("http://localhost:%d/b.tar.gz", freePort(t)))
	b2 := startBrokerWith(t, brokerOptions{policySource: down, policy: "  polling: {min_delay: 100ms, max_delay: 300ms}\n", startsUnready: true})
	_, body = readyz(t, b2)
	if !strings.Contains(body, "connection refused") {
		t.Errorf("/readyz does not show why the bundle does not load:\n%s", body)
	}
	secretFree(t, "/readyz with the bundle server down", body)
	for _, p := range []*process{b.proc, b2.proc} {
		log := p.logWith(t, `"source":"http://xxxxx@localhost`) // the source, redacted
		secretFree(t, "the log", log)
	}
}
