package broker_test

import (
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"
)

// base64 decoding skips \r and \n, so a handle with one added is the same
// handle: it must still count as used (and for slow_down) on this replica,
// whatever the provider would say about its code.
func TestDeviceHandleVariantsAreTheSameHandle(t *testing.T) {
	d := newDeviceFixture(t, &fakeIdP{revalidate: time.Hour})
	start := d.form(t, "/login/device", url.Values{"service": {svcName}})
	handle := start.body["device_code"].(string)
	if a := d.form(t, "/login/device/token", url.Values{"service": {svcName}, "device_code": {handle}}); a.status != http.StatusOK {
		t.Fatalf("first poll: %d %s", a.status, a.raw)
	}
	for _, variant := range []string{handle + "\n", "\r" + handle, handle[:10] + "\n" + handle[10:]} {
		if a := d.form(t, "/login/device/token", url.Values{"service": {svcName}, "device_code": {variant}}); a.status != http.StatusBadRequest || a.body["error"] != "invalid_grant" {
			t.Errorf("replay of %q: %d %s, want 400 invalid_grant", variant, a.status, a.raw)
		}
	}
}

// Every configuration reload builds a new server: the device-login state of
// the old one must go with it, not keep goroutines (and its handles) alive.
// The fixture's own caches leave some: the count is against fixtures
// without device login.
func TestServersWithDeviceLoginLeaveNoGoroutines(t *testing.T) {
	left := func(build func(t *testing.T)) int {
		t.Run("warm", build) // what the first one starts once for all
		time.Sleep(100 * time.Millisecond)
		before := runtime.NumGoroutine()
		for range 20 {
			t.Run("server", build)
		}
		time.Sleep(300 * time.Millisecond) // closed test servers' goroutines end
		return runtime.NumGoroutine() - before
	}
	plain := left(func(t *testing.T) { newFixture(t) })
	device := left(func(t *testing.T) { newDeviceFixture(t, &fakeIdP{revalidate: time.Hour}) })
	if device-plain >= 5 {
		t.Errorf("20 servers with device login left %d goroutines more than 20 without", device-plain)
	}
}
