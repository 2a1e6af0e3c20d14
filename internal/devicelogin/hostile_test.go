package devicelogin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// hostileStart is a broker whose device-login answer is body.
func hostileStart(t *testing.T, body string) Broker {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	b, err := BrokerFromRealm(srv.URL+"/token", "r", false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// What `tollgate login` prints comes from the broker: terminal control
// sequences there (a hyperlink hiding another address, a line erased) or a
// verification URI that is no web page must be refused, not printed.
func TestStartRefusesWhatCannotBePrintedSafely(t *testing.T) {
	for name, answer := range map[string]string{
		"OSC 8 link":         `{"device_code":"h","user_code":"ABCD","verification_uri":"https://idp.test/\u001b]8;;https://evil.test/\u0007device\u001b]8;;\u0007","expires_in":600}`,
		"erase in user code": `{"device_code":"h","user_code":"ABCD\r\u001b[2K","verification_uri":"https://idp.test/device","expires_in":600}`,
		"complete URI":       `{"device_code":"h","user_code":"ABCD","verification_uri":"https://idp.test/device","verification_uri_complete":"https://idp.test/\u001b[1A","expires_in":600}`,
		"javascript: URI":    `{"device_code":"h","user_code":"ABCD","verification_uri":"javascript:alert(1)","expires_in":600}`,
		"newline":            `{"device_code":"h","user_code":"ABCD\nOpen https://evil.test instead","verification_uri":"https://idp.test/device","expires_in":600}`,
	} {
		_, err := (&Client{HTTP: NewHTTPClient()}).Start(context.Background(), hostileStart(t, answer), "")
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The code's expiry bounds the whole poll, the broker's answering time
// included, not only the waits between polls.
func TestPollEndsAtTheExpiryWhenTheBrokerIsSlow(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"authorization_pending"}`)
	}))
	defer srv.Close()
	b, err := BrokerFromRealm(srv.URL+"/token", "r", false)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{HTTP: NewHTTPClient(), Wait: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}
	start := time.Now()
	_, err = c.Poll(context.Background(), b, Authorization{DeviceCode: "h", ExpiresIn: 1, Interval: 1})
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("a code of 1 s was polled for %v (%v)", took.Round(time.Millisecond), err)
	}
	if err != ErrExpired {
		t.Errorf("err = %v, want ErrExpired", err)
	}
}
