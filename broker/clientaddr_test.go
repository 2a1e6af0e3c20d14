package broker_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tollgate/tollgate/broker"
)

func TestClientAddressBehindTrustedProxies(t *testing.T) {
	trusted := []string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32"}
	tests := []struct {
		name, header, peer string
		values             []string
		want               string
	}{
		{"no header", "", "10.0.0.5:1", nil, "10.0.0.5"},
		{"untrusted peer: its header is ignored", "", "198.51.100.7:1", []string{"203.0.113.9"}, "198.51.100.7"},
		{"one proxy", "", "10.0.0.5:1", []string{"203.0.113.9"}, "203.0.113.9"},
		{"spoofed left part is skipped", "", "10.0.0.5:1", []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"proxy chain", "", "10.0.0.5:1", []string{"203.0.113.9, 10.1.1.1", "192.0.2.1"}, "203.0.113.9"},
		{"every hop trusted: the left-most", "", "10.0.0.5:1", []string{"10.9.9.9, 10.1.1.1"}, "10.9.9.9"},
		{"garbage hop: the proxy that wrote it", "", "10.0.0.5:1", []string{"203.0.113.9, nonsense, 10.1.1.1"}, "10.1.1.1"},
		{"ports and IPv6", "", "[2001:db8::1]:443", []string{"[2001:db8:1::5]:80, 198.51.100.3:4711"}, "198.51.100.3"},
		{"IPv4-mapped peer", "", "[::ffff:10.0.0.5]:1", []string{"203.0.113.9"}, "203.0.113.9"},
		{"X-Real-IP", "X-Real-IP", "10.0.0.5:1", []string{"203.0.113.9"}, "203.0.113.9"},
		{"X-Real-IP ignores X-Forwarded-For", "X-Real-IP", "10.0.0.5:1", nil, "10.0.0.5"},
		{"Forwarded", "Forwarded", "10.0.0.5:1", []string{`for=1.2.3.4;proto=https, for="[2a00:1450::17]:4711";by=10.0.0.5`}, "2a00:1450::17"},
		{"Forwarded, obfuscated client", "Forwarded", "10.0.0.5:1", []string{`for=_hidden, for=10.1.1.1`}, "10.1.1.1"},
		{"Forwarded, element without for", "Forwarded", "10.0.0.5:1", []string{`proto=https`}, "10.0.0.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := broker.NewClientAddress(trusted, tt.header)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, "/token", nil)
			r.RemoteAddr = tt.peer
			name := tt.header
			if name == "" {
				name = broker.HeaderForwardedFor
			}
			for _, v := range tt.values {
				r.Header.Add(name, v)
			}
			if name != broker.HeaderForwardedFor {
				r.Header.Add(broker.HeaderForwardedFor, "6.6.6.6") // not the configured header: never read
			}
			if got := c.Of(r); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestClientAddressConfiguration(t *testing.T) {
	for _, bad := range [][]string{{"0.0.0.0/0"}, {"::/0"}, {"10.0.0.0/33"}, {"proxy.example.com"}} {
		if _, err := broker.NewClientAddress(bad, ""); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := broker.NewClientAddress([]string{"10.0.0.1"}, "X-Client-IP"); err == nil {
		t.Error("an unknown header was accepted")
	}
	var none *broker.ClientAddress
	r := httptest.NewRequest(http.MethodGet, "/token", nil)
	r.RemoteAddr = "192.0.2.8:1234"
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	if got := none.Of(r); got != "192.0.2.8" {
		t.Fatalf("without trusted proxies: %s, want the peer", got)
	}
}
