package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tollgate/tollgate/identity"
)

func TestClassifyReadsEveryKindOfConnectorAnswer(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	down := fmt.Errorf("connector ldap: %w", identity.ErrUnavailable)
	refused := fmt.Errorf("connector robots: %w", &identity.RejectedError{Reason: "robot expired"})
	for _, tc := range []struct {
		name string
		ctx  context.Context
		ok   bool
		err  error
		want answerKind
	}{
		{"ok", live, true, nil, accepted},
		{"wrong credentials", live, false, nil, wrongCredentials},
		{"unknown user", live, false, identity.ErrUnknownUser, wrongCredentials},
		{"rejected", live, false, refused, rejected},
		{"backend down", live, false, down, unavailable},
		{"caller gone", gone, false, fmt.Errorf("%w: %v", down, context.Canceled), cancelled},
		{"wrong credentials after the caller left", gone, false, nil, wrongCredentials},
	} {
		if got := classify(tc.ctx, tc.ok, tc.err).kind; got != tc.want {
			t.Errorf("%s: classify = %d, want %d", tc.name, got, tc.want)
		}
	}
	var ae *apiError
	if err := classify(live, false, refused).failure("identity backend"); !errors.As(err, &ae) || ae.kind != kindUnauthorized || ae.message != "robot expired" {
		t.Errorf("rejected answers %v, want 401 with the reason", err)
	}
	if err := classify(live, false, down).failure("identity backend"); !errors.As(err, &ae) || ae.kind != kindUnavailable {
		t.Errorf("backend down answers %v, want 503", err)
	}
}

// Nobody reads the answer to a client that went away: nothing is written.
func TestCancelledRequestWritesNothing(t *testing.T) {
	s := &Server{}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/token", nil)
	status := s.writeError(w, r, newError(kindCancelled, context.Canceled, "client went away"))
	if status != statusClientClosed || w.Body.Len() != 0 || len(w.Header()) != 0 {
		t.Fatalf("status %d, wrote %q with headers %v", status, w.Body.String(), w.Header())
	}
}
