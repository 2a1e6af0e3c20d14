package main

import (
	"context"
	"net/http"
	"testing"
)

func TestPprofServesOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.1.2.3:6060", "example.com:6060", "6060"} {
		if a, err := startPprof(context.Background(), addr); err == nil {
			t.Errorf("--pprof %s: served on %v, want a refusal", addr, a)
		}
	}
	if a, err := startPprof(context.Background(), ""); a != nil || err != nil {
		t.Errorf("no --pprof: %v %v, want nothing", a, err)
	}
	if got, err := pprofAddr(":6060"); got != "127.0.0.1:6060" || err != nil {
		t.Errorf("--pprof :6060 is %q %v, want 127.0.0.1:6060", got, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := startPprof(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + a.String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
