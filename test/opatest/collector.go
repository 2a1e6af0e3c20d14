// Package opatest is the far side of OPA's decision-log upload API for
// tests: a collector that keeps the gzipped JSON arrays of events OPA
// POSTs, or answers every upload with 500, or never answers.
package opatest

import (
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Mode is how a Collector answers an upload.
type Mode int

const (
	Keep Mode = iota // reads the events, keeps them and answers 200
	Fail             // answers 500 without reading
	Hang             // does not answer until the test ends
)

// Collector is an http.Handler that takes decision-log uploads; it counts
// every upload it is asked, whatever its Mode.
type Collector struct {
	URL string // the server's, when it came from Start

	t       testing.TB
	mode    Mode
	release chan struct{} // closed when the test ends, for Hang
	uploads atomic.Int64
	mu      sync.Mutex
	events  []map[string]any
}

// New is a Collector to mount on a server of the test's own. A hanging
// one wants Start: its uploads must be released before the server closes.
func New(t testing.TB, mode Mode) *Collector {
	return &Collector{t: t, mode: mode, release: make(chan struct{})}
}

// Start serves a Collector at /logs and other (nil: nothing) at every
// other path, until the test ends.
func Start(t testing.TB, mode Mode, other http.Handler) *Collector {
	t.Helper()
	c := New(t, mode)
	mux := http.NewServeMux()
	mux.Handle("/logs", c)
	if other != nil {
		mux.Handle("/", other)
	}
	srv := httptest.NewServer(mux)
	c.URL = srv.URL
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(c.release) }) // before srv.Close, which waits for handlers
	return c
}

func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.uploads.Add(1)
	switch c.mode {
	case Fail:
		http.Error(w, "collector down", http.StatusInternalServerError)
		return
	case Hang:
		select {
		case <-c.release:
		case <-r.Context().Done():
		}
		return
	}
	var batch []map[string]any
	zr, err := gzip.NewReader(r.Body)
	if err == nil {
		err = json.NewDecoder(zr).Decode(&batch)
	}
	if err != nil {
		c.t.Errorf("a decision-log upload OPA's API would refuse: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.events = append(c.events, batch...)
	c.mu.Unlock()
}

// Uploads is how many uploads the collector was asked so far.
func (c *Collector) Uploads() int64 { return c.uploads.Load() }

// Events is a copy of the events kept so far, in the order they came.
func (c *Collector) Events() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]map[string]any(nil), c.events...)
}

// Find returns the first event kept for which match holds, or nil.
func (c *Collector) Find(match func(e map[string]any) bool) map[string]any {
	for _, e := range c.Events() {
		if match(e) {
			return e
		}
	}
	return nil
}

// Await is Find, waiting up to 10 seconds for the event; t fails if none
// comes. OPA uploads a decision a second or two after it is made.
func (c *Collector) Await(t testing.TB, what string, match func(e map[string]any) bool) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if e := c.Find(match); e != nil {
			return e
		}
	}
	t.Fatalf("no decision-log event for %s within 10s", what)
	return nil
}

// Tollgate is what tollgate adds to an event under custom.tollgate (nil
// when there is none): its request id, token id, session...
func Tollgate(e map[string]any) map[string]any {
	custom, _ := e["custom"].(map[string]any)
	tg, _ := custom["tollgate"].(map[string]any)
	return tg
}

// Input is the event's input document, nil when there is none.
func Input(e map[string]any) map[string]any {
	in, _ := e["input"].(map[string]any)
	return in
}
