package broker_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/identity"
)

// countingIdP counts the device authorizations the broker asks for.
type countingIdP struct {
	*fakeIdP
	starts atomic.Int64
}

func (p *countingIdP) StartDevice(ctx context.Context) (identity.DeviceAuthorization, error) {
	p.starts.Add(1)
	return p.fakeIdP.StartDevice(ctx)
}

// POST /login/device needs no credential and makes the broker ask the
// provider, as its OAuth client, for a device code: one address must not
// be able to make it ask without bound (the provider's rate limit on the
// broker's client would then refuse every user's login).
func TestDeviceStartsFromOneAddressAreLimited(t *testing.T) {
	idp := &countingIdP{fakeIdP: &fakeIdP{revalidate: time.Hour}}
	sealer, _ := broker.NewSealer(bytes.Repeat([]byte{1}, broker.SealKeySize))
	f := newFixture(t, func(o *broker.Options) {
		o.Throttle = &broker.Throttle{Store: broker.NewMemoryCounters(1000, 24*time.Hour), Window: time.Minute,
			MaxPerUser: 5, MaxPerAddress: 20, KnownAddressWindow: time.Hour}
		o.Sessions = &broker.SessionOptions{Devices: map[string]identity.DeviceConnector{"sso": idp},
			Store: broker.NewFileSessions(filepath.Join(t.TempDir(), "s.json")), Sealer: sealer, MaxLifetime: time.Hour, Idle: time.Hour}
	})
	refused := 0
	for range 500 {
		req, _ := http.NewRequest(http.MethodPost, f.ts.URL+"/login/device", strings.NewReader(url.Values{"service": {svcName}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if a := do(t, req); a.status == http.StatusTooManyRequests {
			refused++
		}
	}
	if n := idp.starts.Load(); refused == 0 || n > 100 {
		t.Errorf("500 device logins started from one address: %d refused, %d device authorizations asked of the provider", refused, n)
	}
}
