package policies_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/test/testenv"
)

// OPA's plugins log the URLs they fetch, with their query string (a
// pre-signed URL's signature) and, at debug, their password: tollgate's
// log shows them redacted, as /readyz does.
func TestOPALogsShowNoURLSecrets(t *testing.T) {
	var buf testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	doc := `services:
  s: {url: "http://user:s3cret@127.0.0.1:1/x"}
bundles:
  authz: {service: s, resource: "b.tar.gz?X-Amz-Signature=5ig"}
`
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t", PersistenceDirectory: t.TempDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(buf.String(), "Bundle load failed"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("OPA logged no failed download:\n%s", buf.String())
		}
	}
	logged := buf.String()
	if strings.Contains(logged, "5ig") || strings.Contains(logged, "s3cret") {
		t.Errorf("the log shows the URL's secrets:\n%s", logged)
	}
	if !strings.Contains(logged, "http://xxxxx@127.0.0.1:1/x/b.tar.gz?xxxxx") {
		t.Errorf("the log does not name the URL, redacted:\n%s", logged)
	}
}
