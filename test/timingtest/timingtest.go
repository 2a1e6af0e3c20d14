// Package timingtest compares how long the paths of a refusal take, for
// tests that prove a wrong password does not tell whether a user name exists.
package timingtest

import (
	"slices"
	"testing"
	"time"
)

// Path is one way of being refused.
type Path struct {
	Name string
	Run  func()
}

// Tolerance is how far apart two medians may be: the slower at most 25%
// slower than the faster.
const Tolerance = 0.25

// Close reports whether a and b are within Tolerance of each other.
func Close(a, b time.Duration) bool {
	return float64(max(a, b)) <= float64(min(a, b))*(1+Tolerance)
}

// Measure runs every path n times and returns the median duration of each,
// and whether accept took them. The paths run interleaved (a, b, a, b, ...)
// after one untimed round, so load on a shared machine or the race
// detector's slowdown falls on all of them alike. When accept refuses the
// medians, n more rounds join the samples, up to 4n: on two busy cores a
// path's samples cluster around "ran" and "waited for a core", and the
// median of a few can sit on either side, while more of them settle it. A
// real difference does not settle, however many rounds run.
func Measure(t testing.TB, n int, accept func(medians []time.Duration) bool, paths ...Path) ([]time.Duration, bool) {
	t.Helper()
	for _, p := range paths {
		p.Run() // warm pools and caches: the first sample is not a login's cost
	}
	samples := make([][]time.Duration, len(paths))
	medians := make([]time.Duration, len(paths))
	for rounds := n; rounds <= 4*n; rounds += n {
		for range n {
			for i, p := range paths {
				start := time.Now()
				p.Run()
				samples[i] = append(samples[i], time.Since(start))
			}
		}
		for i, s := range samples {
			sorted := slices.Sorted(slices.Values(s))
			medians[i] = sorted[len(sorted)/2]
			t.Logf("%s: median %v of %d", paths[i].Name, medians[i], rounds)
		}
		if accept(medians) {
			return medians, true
		}
	}
	return medians, false
}

// Alike fails t unless the medians of every path come within Tolerance of
// each other (see Measure).
func Alike(t testing.TB, n int, paths ...Path) {
	t.Helper()
	medians, ok := Measure(t, n, func(m []time.Duration) bool { return Close(slices.Min(m), slices.Max(m)) }, paths...)
	if !ok {
		t.Errorf("medians differ by more than %.0f%%: %v", Tolerance*100, medians)
	}
}
