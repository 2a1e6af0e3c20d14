package probe_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/probe"
)

type recorded []probe.Outcome

func (r *recorded) Record(o probe.Outcome, _ time.Duration) { *r = append(*r, o) }

// TestCallsAreClassified: an answer is ok, a deadline or network timeout is
// a timeout, anything else an error, and a call whose caller hung up is not
// recorded at all, whatever it failed with.
func TestCallsAreClassified(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	netTimeout := &net.OpError{Op: "read", Err: timeoutErr{}}
	for _, c := range []struct {
		name   string
		ctx    context.Context
		failed error
		want   []probe.Outcome
	}{
		{"answered", context.Background(), nil, []probe.Outcome{probe.OK}},
		{"answered, caller gone meanwhile", cancelled, nil, []probe.Outcome{probe.OK}},
		{"refused connection", context.Background(), errors.New("connection refused"), []probe.Outcome{probe.Error}},
		{"deadline", expired, fmt.Errorf("search: %w", context.DeadlineExceeded), []probe.Outcome{probe.Timeout}},
		{"network timeout", context.Background(), fmt.Errorf("bind: %w", netTimeout), []probe.Outcome{probe.Timeout}},
		{"caller hung up", cancelled, fmt.Errorf("search: %w", context.Canceled), nil},
		{"caller hung up, other error", cancelled, errors.New("connection reset"), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got recorded
			probe.Start(&got)(c.ctx, c.failed)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("recorded %v, want %v", got, c.want)
			}
		})
	}
}

func TestNilRecorderRecordsNothing(t *testing.T) {
	var f probe.Factory
	probe.Start(f.For("x"))(context.Background(), errors.New("down")) // must not panic
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
