package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
)

type replayOptions struct {
	query        string
	format       string // pretty (text) or json (one change per line)
	allowChanges bool
}

// replayDecisionLog is `policy test --against-log`: the recorded decisions
// that the policy at location would decide differently.
func replayDecisionLog(ctx context.Context, out io.Writer, location, logPath string, o replayOptions) error {
	if o.format != "pretty" && o.format != "json" {
		return fmt.Errorf("--format %q with --against-log: want pretty or json", o.format)
	}
	b, _, err := (&bundles.Source{Location: location}).Fetch(ctx, "")
	if err != nil {
		return err
	}
	p, err := policies.Compile(ctx, b, o.query)
	if err != nil {
		return err
	}
	var r io.Reader = os.Stdin
	if logPath != "-" {
		f, err := os.Open(logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	changed, total := 0, 0
	skipped, err := p.Replay(ctx, r, func(rep policies.Replayed) error {
		total++
		if !rep.Changed() {
			return nil
		}
		changed++
		return printChange(out, rep, o.format)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", logPath, err)
	}
	summary := fmt.Sprintf("%d of %d decisions in %s change under policy revision %s", changed, total, logPath, b.Revision)
	if skipped > 0 {
		summary += fmt.Sprintf(" (%d lines without an input skipped)", skipped)
	}
	if o.format == "pretty" {
		fmt.Fprintln(out, summary)
	}
	if changed > 0 && !o.allowChanges {
		return cli.Exit(summary+"; --allow-changes accepts them", exitTestsFailed)
	}
	return nil
}

func printChange(w io.Writer, rep policies.Replayed, format string) error {
	afterErr := ""
	if rep.AfterErr != nil {
		afterErr = rep.AfterErr.Error()
	}
	if format == "json" {
		return json.NewEncoder(w).Encode(map[string]any{"line": rep.Line, "input": rep.Input,
			"before": rep.Before, "before_error": !rep.BeforeOK, "after": rep.After, "after_error": afterErr})
	}
	who := rep.Input.Identity.Subject
	if rep.Input.Identity.Anonymous {
		who = "anonymous"
	}
	groups := make([]string, len(rep.Input.Identity.Groups))
	for i, g := range rep.Input.Identity.Groups {
		groups[i] = printable(g)
	}
	if len(groups) == 0 {
		groups = []string{"none"}
	}
	fmt.Fprintf(w, "line %d: %s via %s (groups: %s), service %s\n", rep.Line, printable(who),
		printable(rep.Input.Identity.Connector), strings.Join(groups, ", "), printable(rep.Input.Service))
	for i, s := range rep.Input.Scopes {
		before, after := "error", "error"
		if rep.BeforeOK {
			before = actionsText(rep.Before[i])
		}
		if rep.AfterErr == nil {
			after = actionsText(rep.After[i])
		}
		mark := " "
		if before != after {
			mark = "*"
		}
		fmt.Fprintf(w, "  %s %-40s was: %-20s now: %s\n", mark, printable(s.String()), before, after)
	}
	if afterErr != "" {
		fmt.Fprintf(w, "  error now: %s\n", printable(afterErr))
	}
	in, err := json.Marshal(rep.Input)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "  input: %s\n", in)
	return err
}

func actionsText(actions []string) string {
	if len(actions) == 0 {
		return "(nothing)"
	}
	return printable(strings.Join(actions, ",")) // the recorded ones are the log's
}

// printable returns s as it is, or quoted when it holds a character a
// terminal would act on (ESC, BEL, ...): the log records what requests
// sent, and a reviewer reads it on a terminal.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || r == utf8.RuneError {
			return strconv.Quote(s)
		}
	}
	return s
}
