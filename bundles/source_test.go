package bundles_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/test/testenv"
)

func keyPair(t *testing.T) (private, public string) {
	return testenv.WriteES256KeyPair(t, t.TempDir())
}

// policyDir writes a small bundle directory whose policy grants action.
func policyDir(t *testing.T, action string) string {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "authz.rego", "package registry.authz\n\nallowed contains {\"type\": \"repository\", \"name\": \"x\", \"action\": data.act} if input.x\n")
	write(t, dir, "authz_test.rego", "package registry.authz_test\n\ntest_x if true\n")
	write(t, dir, "data.json", `{"act": "`+action+`"}`)
	return dir
}

func build(t *testing.T, dir, revision string, s *bundles.Signing) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := bundles.Build(context.Background(), dir, revision, s, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func verifier(t *testing.T, public string) *bundle.VerificationConfig {
	t.Helper()
	vc, err := bundles.VerificationConfig(public, "ES256", "", "")
	if err != nil {
		t.Fatal(err)
	}
	return vc
}

// tamper rewrites one file of a gzipped tarball through edit.
func tamper(t *testing.T, tarball []byte, name string, edit func([]byte) []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tarball))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if strings.TrimPrefix(h.Name, "/") == name {
			data, found = edit(data), true
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	zw.Close()
	if !found {
		t.Fatalf("tamper: %s not in the bundle", name)
	}
	return out.Bytes()
}

func TestBuildWritesABundleThatLoadsWithoutTests(t *testing.T) {
	data := build(t, policyDir(t, "pull"), "rev-7", nil)
	b, _, err := (&bundles.Source{Location: writeFile(t, data)}).Fetch(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if b.Revision != "rev-7" {
		t.Errorf("revision %q, want the one given to Build", b.Revision)
	}
	if len(b.Modules) != 1 {
		t.Errorf("modules %v: want authz.rego only, tests dropped", keys(b.Modules))
	}
	if b.Data["act"] != "pull" {
		t.Errorf("data %v", b.Data)
	}
}

func keys[V any](m map[string]V) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSignedBundleVerification(t *testing.T) {
	private, public := keyPair(t)
	_, otherPublic := keyPair(t)
	signing := &bundles.Signing{Key: private, Algorithm: "ES256"}
	signed := build(t, policyDir(t, "pull"), "r1", signing)
	unsigned := build(t, policyDir(t, "pull"), "r1", nil)
	resigned := new(bytes.Buffer)
	if err := bundles.Sign(bytes.NewReader(unsigned), signing, resigned); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		data    []byte
		public  string
		wantErr string
	}{
		{"signed by build", signed, public, ""},
		{"signed by Sign", resigned.Bytes(), public, ""},
		{"tampered policy", tamper(t, signed, "authz.rego", func(b []byte) []byte {
			return bytes.Replace(b, []byte("if input.x"), []byte("if true"), 1)
		}), public, "digest mismatch"},
		{"tampered data", tamper(t, signed, "data.json", func([]byte) []byte { return []byte(`{"act": "push"}`) }), public, "digest mismatch"},
		{"tampered test file", tamper(t, signed, "authz_test.rego", func(b []byte) []byte { return append(b, '\n') }), public, "digest mismatch"},
		{"unsigned", unsigned, public, "missing .signatures.json"},
		{"another key", signed, otherPublic, "JWT signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &bundles.Source{Location: writeFile(t, tc.data), Verify: verifier(t, tc.public)}
			b, _, err := src.Fetch(context.Background(), "")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if b.Revision != "r1" || len(b.Modules) != 1 || b.Data["act"] != "pull" {
					t.Fatalf("loaded %q %v %v", b.Revision, keys(b.Modules), b.Data)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestBuildRefusesABrokenPolicy(t *testing.T) {
	dir := policyDir(t, "pull")
	write(t, dir, "broken.rego", "package registry.authz\n\nallowed contains x if {\n")
	var buf bytes.Buffer
	if err := bundles.Build(context.Background(), dir, "", nil, &buf); err == nil {
		t.Fatal("a policy that does not parse was built")
	}
}

// bundleServer serves one bundle at a time with an ETag and counts requests.
type bundleServer struct {
	mu      sync.Mutex
	data    []byte
	etag    string
	status  int
	fetches atomic.Int64
	full    atomic.Int64
}

func (s *bundleServer) publish(data []byte, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.etag, s.status = data, etag, http.StatusOK
}

func (s *bundleServer) fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

func (s *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	data, etag, status := s.data, s.etag, s.status
	s.mu.Unlock()
	if status != http.StatusOK {
		http.Error(w, "unavailable", status)
		return
	}
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.full.Add(1)
	w.Header().Set("ETag", etag)
	w.Write(data)
}

func TestFetchURLUsesETags(t *testing.T) {
	bs := &bundleServer{}
	bs.publish(build(t, policyDir(t, "pull"), "r1", nil), `"r1"`)
	ts := httptest.NewServer(bs)
	defer ts.Close()
	src := &bundles.Source{Location: ts.URL + "/bundle.tar.gz"}
	if !src.IsURL() {
		t.Fatal("an http URL is not a URL")
	}
	b, etag, err := src.Fetch(context.Background(), "")
	if err != nil || b.Revision != "r1" || etag != `"r1"` {
		t.Fatalf("first fetch: %v %q %v", b, etag, err)
	}
	if _, _, err := src.Fetch(context.Background(), etag); !errors.Is(err, bundles.ErrNotModified) {
		t.Fatalf("fetch with the current ETag: %v, want ErrNotModified", err)
	}
	if bs.full.Load() != 1 {
		t.Fatalf("%d full downloads, want 1", bs.full.Load())
	}
	bs.fail(http.StatusBadGateway)
	if _, _, err := src.Fetch(context.Background(), etag); err == nil || !strings.Contains(err.Error(), "502") {
		t.Fatalf("fetch from a failing server: %v", err)
	}
}
