package broker_test

import (
	"net/http"
	"net/url"
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
