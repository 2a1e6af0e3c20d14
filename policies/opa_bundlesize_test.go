package policies_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policies"
)

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// On the opa: path a download of a few hundred KiB, every file under the
// per-file limit OPA knows, must not become hundreds of MiB of policy data:
// tollgate's total limit refuses it before OPA reads it (an attack review
// found this open before the limits reached the opa: path).
func TestOPABundleOfManySmallFilesIsBounded(t *testing.T) {
	const files, size = 200, 1 << 20 // 200 MiB in all, each file at the 1 MiB limit
	body := manyFileBundle(t, files, size)
	t.Logf("bundle download: %d bytes", len(body))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	doc := fmt.Sprintf(`services:
  s: {url: %s}
bundles:
  authz: {service: s, resource: /b.tar.gz}
`, srv.URL)
	before := heapInUse()
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t", MaxFileBytes: size + 1<<10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	deadline := time.Now().Add(60 * time.Second)
	for !e.Ready() && time.Now().Before(deadline) {
		if bs := e.Bundles(ctx); len(bs) == 1 && bs[0].LastError != "" {
			t.Logf("refused: %s", bs[0].LastError)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	grew := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %d MiB", grew>>20)
	if e.Ready() {
		t.Errorf("a bundle of %d files of %d bytes (%d bytes downloaded) was activated; heap grew by %d MiB", files, size, len(body), grew>>20)
	}
}
