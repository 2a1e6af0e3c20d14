package policies

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/tollgate/tollgate/authz"
)

// Replayed is one recorded decision and what a policy decides now for the
// same input: the actions each requested scope is granted, as the broker
// signs them (authz.Decision.Grants).
type Replayed struct {
	Line     int // in the log, from 1
	Input    authz.Input
	Before   [][]string // granted actions per scope, sorted; nil after an error
	After    [][]string
	BeforeOK bool // false when the recorded decision was an error
	AfterErr error
}

// Changed reports whether the policy now grants something else, or fails
// where it decided, or decides where it failed.
func (r Replayed) Changed() bool {
	if r.BeforeOK != (r.AfterErr == nil) {
		return true
	}
	return r.BeforeOK && !slices.EqualFunc(r.Before, r.After, slices.Equal)
}

// loggedDecision is what replay reads of a decision-log line. Two lines
// share these fields: OPA's (decision_id, path, input, result; its console
// line, which policy.decision_log writes now) and the older line
// tollgate's own decision log wrote before policy.decision_log went
// through OPA's plugin (decision 0014), which users keep in archives
// (testdata/decisions-old.jsonl; docs/opa.md lists how it differs). OPA's
// result is the rule's value as queried: the allowed set (path
// .../allowed), or the package's document with an allowed field (path
// .../authz). The error is OPA's message, OPA's object, or the old line's
// {code, message}: any of them is a recorded error.
type loggedDecision struct {
	Input  *authz.Input    `json:"input"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// allowedEntry is one element of the allowed set: an action granted on a
// resource.
type allowedEntry struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Action string `json:"action"`
}

// granted turns a logged result into the grants the broker signed.
func (l loggedDecision) granted(line int) ([][]string, bool, error) {
	if len(l.Error) > 0 && string(l.Error) != "null" {
		return nil, false, nil
	}
	res := bytes.TrimSpace(l.Result)
	if len(res) > 0 && res[0] == '{' {
		var doc struct {
			Allowed json.RawMessage `json:"allowed"`
		}
		if err := json.Unmarshal(res, &doc); err != nil {
			return nil, false, fmt.Errorf("line %d: result: %w", line, err)
		}
		res = doc.Allowed
	}
	var allowed []allowedEntry
	if len(res) > 0 && string(res) != "null" {
		if err := json.Unmarshal(res, &allowed); err != nil {
			return nil, false, fmt.Errorf("line %d: result is not a list of {type, name, action}: %w", line, err)
		}
	}
	// The scopes by type and name: the log is input, and matching every
	// entry against every scope is quadratic in the length of a line.
	type resource struct{ typ, name string }
	scopes := make(map[resource][]int, len(l.Input.Scopes))
	for i, s := range l.Input.Scopes {
		r := resource{s.Type, s.Name}
		scopes[r] = append(scopes[r], i)
	}
	d := authz.Decision{Allowed: make([]map[string]bool, len(l.Input.Scopes))}
	for _, a := range allowed {
		if a.Action == "" {
			continue
		}
		for _, i := range scopes[resource{a.Type, a.Name}] {
			if d.Allowed[i] == nil {
				d.Allowed[i] = map[string]bool{}
			}
			d.Allowed[i][a.Action] = true
		}
	}
	return grantedActions(d, *l.Input), true, nil
}

func grantedActions(d authz.Decision, in authz.Input) [][]string {
	out := [][]string{}
	for _, g := range d.Grants(in.Scopes) {
		out = append(out, slices.Sorted(slices.Values(g.Granted)))
	}
	return out
}

// maxReplayLine bounds a decision-log line: inputs with many claims are
// long, and the scanner holds one line in memory.
const maxReplayLine = 16 << 20

// Replay decides every input of the decision log r with p, in order, and
// calls fn with the recorded and the new decision. Lines without an input
// (other log lines) are skipped and counted; a line that is not JSON is an
// error.
func (p *Policy) Replay(ctx context.Context, r io.Reader, fn func(Replayed) error) (skipped int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), maxReplayLine)
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l loggedDecision
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return skipped, fmt.Errorf("decision log line %d: %w", line, err)
		}
		if l.Input == nil {
			skipped++
			continue
		}
		before, ok, err := l.granted(line)
		if err != nil {
			return skipped, fmt.Errorf("decision log %w", err)
		}
		rep := Replayed{Line: line, Input: *l.Input, Before: before, BeforeOK: ok}
		d, err := p.eval(ctx, l.Input)
		if rep.AfterErr = err; err == nil {
			rep.After = grantedActions(d, *l.Input)
		}
		if err := fn(rep); err != nil {
			return skipped, err
		}
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		return skipped, fmt.Errorf("decision log line %d: longer than %d MiB", line+1, maxReplayLine>>20)
	case err != nil:
		return skipped, fmt.Errorf("reading the decision log after line %d: %w", line, err)
	}
	return skipped, nil
}
