package devicelogin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/credhelper"
)

// fakeBroker plays the broker's side of the issue-17 wire contract
// (device login, poll, logout) for the client's tests. It is a stand-in until
// the broker's /login/device lands; the e2e test against the real broker,
// OIDC provider and registry replaces it for the happy path. polls lists
// the answers to successive polls: an error code, or "" for success.
type fakeBroker struct {
	t         *testing.T
	srv       *httptest.Server
	polls     []string
	interval  int
	mu        sync.Mutex
	requests  []string // path and form of every request
	loggedOut []string
}

func newFakeBroker(t *testing.T, polls ...string) *fakeBroker {
	b := &fakeBroker{t: t, polls: polls, interval: 5}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *fakeBroker) serve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests = append(b.requests, r.Method+" "+r.URL.Path+" "+r.PostForm.Encode())
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/auth/login/device":
		if r.PostForm.Get("service") != "registry.test" {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":"invalid_request","error_description":"unknown service"}`)
			return
		}
		fmt.Fprintf(w, `{"device_code":"handle-1","user_code":"WDJB-MJHT","verification_uri":"https://idp.test/device",
			"verification_uri_complete":"https://idp.test/device?user_code=WDJB-MJHT","expires_in":600,"interval":%d}`, b.interval)
	case "/auth/login/device/token":
		if r.PostForm.Get("device_code") != "handle-1" {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":"invalid_grant"}`)
			return
		}
		next := "authorization_pending"
		if len(b.polls) > 0 {
			next, b.polls = b.polls[0], b.polls[1:]
		}
		switch next {
		case "":
			fmt.Fprint(w, `{"refresh_token":"rt-session-1","session_id":"s1","subject":"alice","expires_in":2592000}`)
		case "503":
			w.WriteHeader(503)
			fmt.Fprint(w, `{"error":"temporarily_unavailable"}`)
		default:
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":%q}`, next)
		}
	case "/auth/logout":
		b.loggedOut = append(b.loggedOut, r.PostForm.Get("refresh_token"))
		fmt.Fprint(w, `{}`)
	default:
		http.NotFound(w, r)
	}
}

func (b *fakeBroker) broker(t *testing.T) Broker {
	t.Helper()
	br, err := BrokerFromRealm(b.srv.URL+"/auth/token", "registry.test", false)
	if err != nil {
		t.Fatal(err)
	}
	return br
}

// recordingWait records the waits the poll loop asks for and returns at
// once.
type recordingWait struct{ waits []time.Duration }

func (r *recordingWait) wait(ctx context.Context, d time.Duration) error {
	r.waits = append(r.waits, d)
	return ctx.Err()
}

func TestPollHonoursPendingAndSlowDown(t *testing.T) {
	fb := newFakeBroker(t, "authorization_pending", "slow_down", "authorization_pending", "slow_down", "")
	rw := &recordingWait{}
	c := &Client{HTTP: NewHTTPClient(), Wait: rw.wait}
	a, err := c.Start(context.Background(), fb.broker(t), "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Poll(context.Background(), fb.broker(t), a)
	if err != nil || s.RefreshToken != "rt-session-1" || s.SessionID != "s1" {
		t.Fatalf("Poll = %+v, %v", s, err)
	}
	// 5 s, then +5 s after each slow_down (RFC 8628 §3.5).
	if got := fmt.Sprint(rw.waits); got != "[5s 5s 10s 10s 15s]" {
		t.Errorf("waits %s, want [5s 5s 10s 10s 15s]", got)
	}
}

func TestPollEndsOnTheBrokersVerdict(t *testing.T) {
	for _, tc := range []struct {
		polls []string
		want  error
	}{
		{[]string{"authorization_pending", "expired_token"}, ErrExpired},
		{[]string{"access_denied"}, ErrDenied},
		{[]string{"invalid_grant"}, nil},
		{[]string{"503", "503", "503", "503", "503"}, nil},
	} {
		fb := newFakeBroker(t, tc.polls...)
		c := &Client{HTTP: NewHTTPClient(), Wait: (&recordingWait{}).wait}
		a := Authorization{DeviceCode: "handle-1", ExpiresIn: 600, Interval: 5}
		s, err := c.Poll(context.Background(), fb.broker(t), a)
		if err == nil || s.RefreshToken != "" || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("polls %v: %+v, %v; want %v", tc.polls, s, err, tc.want)
		}
		if n := len(fb.requests); n != len(tc.polls) {
			t.Errorf("polls %v: %d requests, want %d", tc.polls, n, len(tc.polls))
		}
	}
}

// TestPollStopsAtTheCodesExpiry: a broker that says pending forever is
// polled until expires_in has passed, not longer.
func TestPollStopsAtTheCodesExpiry(t *testing.T) {
	fb := newFakeBroker(t)
	rw := &recordingWait{}
	c := &Client{HTTP: NewHTTPClient(), Wait: rw.wait}
	_, err := c.Poll(context.Background(), fb.broker(t), Authorization{DeviceCode: "handle-1", ExpiresIn: 60, Interval: 5})
	if !errors.Is(err, ErrExpired) || len(rw.waits) != 12 {
		t.Fatalf("Poll: %v after %d polls, want ErrExpired after 12", err, len(rw.waits))
	}
}

// TestPollCancels: Ctrl-C during a wait ends the loop at once.
func TestPollCancels(t *testing.T) {
	fb := newFakeBroker(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := (&Client{HTTP: NewHTTPClient()}).Poll(ctx, fb.broker(t), Authorization{DeviceCode: "handle-1", ExpiresIn: 600, Interval: 30})
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Fatalf("Poll after cancel: %v in %v", err, time.Since(start))
	}
}

// TestBrokerRedirectToAnotherOriginIsNotFollowed: a 307 resends the body,
// refresh token included; the client must not follow it off the realm's
// origin (the same lesson as docker's and the registry's token fetches).
func TestBrokerRedirectToAnotherOriginIsNotFollowed(t *testing.T) {
	var leaked []string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		leaked = append(leaked, r.PostForm.Encode())
		fmt.Fprint(w, `{}`)
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/logout?token=abc", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	b, err := BrokerFromRealm(redirector.URL+"/token", "r", false)
	if err != nil {
		t.Fatal(err)
	}
	err = (&Client{HTTP: NewHTTPClient()}).EndSession(context.Background(), b, "rt-secret")
	if err == nil || len(leaked) != 0 {
		t.Fatalf("EndSession through a cross-origin 307: %v; the other origin received %q", err, leaked)
	}
	if strings.Contains(err.Error(), "rt-secret") || strings.Contains(err.Error(), "abc") {
		t.Errorf("the error shows a secret: %v", err)
	}
}

func TestStartNamesABrokerWithoutDeviceLogin(t *testing.T) {
	old := httptest.NewServer(http.NotFoundHandler())
	defer old.Close()
	b, err := BrokerFromRealm(old.URL+"/token", "r", false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&Client{HTTP: NewHTTPClient()}).Start(context.Background(), b, "")
	if err == nil || !strings.Contains(err.Error(), "offers no device login") {
		t.Fatalf("Start against a broker without /login/device: %v", err)
	}
}

func TestBrokerFromRealm(t *testing.T) {
	b, err := BrokerFromRealm("https://auth.example.com/tollgate/token", "reg", false)
	if err != nil || b.endpoint("login/device") != "https://auth.example.com/tollgate/login/device" {
		t.Fatalf("BrokerFromRealm = %v, %v", b.endpoint("login/device"), err)
	}
	for realm, want := range map[string]string{
		"http://auth.example.com/token":             "plain http",
		"https://auth.example.com/auth":             "does not end in /token",
		"ftp://auth.example.com/token":              "not an http(s) URL",
		"https://user:pw@auth.example.com/x?k=v#fr": "does not end in /token",
	} {
		_, err := BrokerFromRealm(realm, "reg", false)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "k=v") {
			t.Errorf("BrokerFromRealm(%s): %v, want %q and no credentials", realm, err, want)
		}
	}
	if _, err := BrokerFromRealm("http://auth.example.com/token", "reg", true); err != nil {
		t.Errorf("--insecure: %v", err)
	}
}

// registry answers /v2/ with challenge, as distribution does.
func registry(t *testing.T, challenge string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if challenge != "" {
			w.Header().Set("WWW-Authenticate", challenge)
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDiscoverRefusesWhatIsNotATokenRealm(t *testing.T) {
	for challenge, want := range map[string]string{
		`Basic realm="Registry Realm"`: "asks for Basic authentication, not a token",
		``:                             "without a WWW-Authenticate challenge",
		`Bearer service="r"`:           "has no realm",
	} {
		reg := registry(t, challenge)
		_, err := Discover(context.Background(), http.DefaultClient, strings.TrimPrefix(reg.URL, "http://"), false)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("challenge %q: %v, want %q", challenge, err, want)
		}
	}
}

// TestLoginAndLogout runs both commands against a registry and the
// stand-in broker: the credential and the credHelpers entry appear, then
// go, and the broker is told to end the session.
func TestLoginAndLogout(t *testing.T) {
	fb := newFakeBroker(t, "authorization_pending", "")
	reg := registry(t, fmt.Sprintf(`Bearer realm="%s/auth/token",service="registry.test",scope="repository:a:pull,push"`, fb.srv.URL))
	host := strings.TrimPrefix(reg.URL, "http://")
	dir := t.TempDir()
	opts := Options{
		Registry: host, Store: &credhelper.Store{Path: filepath.Join(dir, "tollgate", "credentials.json")},
		DockerConfig: filepath.Join(dir, "docker", "config.json"),
	}
	c := &Client{HTTP: NewHTTPClient(), Wait: (&recordingWait{}).wait}
	var out bytes.Buffer
	if _, err := c.Login(context.Background(), opts, &out); err != nil {
		t.Fatalf("Login: %v\n%s", err, out.String())
	}
	for _, want := range []string{"https://idp.test/device", "WDJB-MJHT", "https://idp.test/device?user_code=WDJB-MJHT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Login's message lacks %s:\n%s", want, out.String())
		}
	}
	cred, err := opts.Store.Get(host)
	if err != nil || cred.Username != "<token>" || cred.Secret != "rt-session-1" || cred.SessionID != "s1" {
		t.Fatalf("stored %+v, %v", cred, err)
	}
	cfg, _ := os.ReadFile(opts.DockerConfig)
	var parsed struct{ CredHelpers map[string]string }
	if err := json.Unmarshal(cfg, &parsed); err != nil || parsed.CredHelpers[host] != "tollgate" {
		t.Fatalf("docker config %s: %v", cfg, err)
	}
	if strings.Contains(string(cfg), "rt-session-1") {
		t.Error("the refresh token is in the docker config")
	}

	if found, err := c.Logout(context.Background(), opts, &out); err != nil || !found {
		t.Fatalf("Logout = %v, %v", found, err)
	}
	if fmt.Sprint(fb.loggedOut) != "[rt-session-1]" {
		t.Errorf("the broker ended %v, want [rt-session-1]", fb.loggedOut)
	}
	if _, err := opts.Store.Get(host); !errors.Is(err, credhelper.ErrNotFound) {
		t.Errorf("after logout: %v", err)
	}
	if cfg, _ := os.ReadFile(opts.DockerConfig); strings.Contains(string(cfg), host) {
		t.Errorf("after logout the docker config still names %s: %s", host, cfg)
	}
}

// TestLogoutWithTheBrokerDownStillErases: best effort at the broker, but
// the credential leaves this machine in any case.
func TestLogoutWithTheBrokerDownStillErases(t *testing.T) {
	dir := t.TempDir()
	opts := Options{
		Registry: "registry.test", Store: &credhelper.Store{Path: filepath.Join(dir, "c.json")},
		DockerConfig: filepath.Join(dir, "config.json"),
	}
	down := httptest.NewServer(http.NotFoundHandler())
	realm := down.URL + "/token"
	down.Close()
	if err := opts.Store.Put("registry.test", credhelper.Credential{Username: "<token>", Secret: "rt-x", Realm: realm}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	found, err := (&Client{HTTP: NewHTTPClient()}).Logout(context.Background(), opts, &out)
	if err != nil || !found || !strings.Contains(out.String(), "warning") {
		t.Fatalf("Logout = %v, %v; output %q", found, err, out.String())
	}
	if strings.Contains(out.String(), "rt-x") {
		t.Errorf("the warning shows the token: %s", out.String())
	}
	if _, err := opts.Store.Get("registry.test"); !errors.Is(err, credhelper.ErrNotFound) {
		t.Errorf("after logout: %v", err)
	}
}
