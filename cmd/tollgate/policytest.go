package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
	"github.com/urfave/cli/v2"
)

// Exit statuses of `policy test`, as `opa test` uses them.
const (
	exitTestsFailed = 2
)

func policyTestCommand() *cli.Command {
	return &cli.Command{
		Name:      "test",
		Usage:     "run Rego unit tests, with the semantics and output of `opa test`",
		ArgsUsage: "PATH...",
		Description: `Runs every rule named test_* in the .rego files under the given paths (data
files load as in a bundle), with OPA's own test runner, so a team's CI needs
only this binary. Exit status 0 when all pass, 2 when a test fails or the
coverage is below --threshold, 1 on any other error (as opa test; with
--coverage a failing test prints no coverage and exits 1, as opa test does).
Unlike opa test, finding no test at all is an error (exit 2).

The output is opa test's: the same text (-v adds the trace of each failure,
--explain chooses which trace), --format json for the results as JSON, and
--coverage for the coverage report as JSON (--threshold implies --coverage).

Examples:
   tollgate policy test policies/default
   tollgate policy test -v --run 'test_guest' policies/default
   tollgate policy test --format json policies/default
   tollgate policy test --coverage --threshold 90 policies/default`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print every test and its print() output"},
			&cli.StringFlag{Name: "run", Aliases: []string{"r"}, Usage: "run only tests whose name matches this regular expression"},
			&cli.BoolFlag{Name: "coverage", Aliases: []string{"c"}, Usage: "report line coverage as JSON (as opa test --coverage)"},
			&cli.Float64Flag{Name: "threshold", Usage: "fail below this coverage percentage (implies --coverage)"},
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "pretty", Usage: "pretty or json (as opa test --format; --coverage always prints JSON)"},
			&cli.StringFlag{Name: "explain", Value: "fails", Usage: "which trace -v shows for a failure: fails, full, notes or debug (implies -v)"},
			&cli.BoolFlag{Name: "var-values", Usage: "show the failing line and its local variables' values"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "time limit for each test"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return errors.New("give at least one path with .rego files")
			}
			o := policyTestOptions{
				verbose: c.Bool("verbose") || c.IsSet("explain"), run: c.String("run"), coverage: c.Bool("coverage"),
				threshold: c.Float64("threshold"), timeout: c.Duration("timeout"),
				format: c.String("format"), varValues: c.Bool("var-values"),
			}
			if c.IsSet("explain") {
				o.explain = c.String("explain")
			}
			return runPolicyTests(c.Context, c.App.Writer, c.Args().Slice(), o)
		},
	}
}

type policyTestOptions struct {
	verbose   bool
	run       string
	coverage  bool
	threshold float64
	timeout   time.Duration
	format    string // pretty or json
	explain   string // trace filter of -v: "" (notes and fails), fails, full, notes, debug
	varValues bool
}

// filterTrace keeps the part of a test's trace that opa test prints.
func (o policyTestOptions) filterTrace(trace []*topdown.Event) []*topdown.Event {
	mode := o.explain
	if mode == "" {
		if o.verbose {
			return lineage.Filter(trace, func(e *topdown.Event) bool { return e.Op == topdown.NoteOp || e.Op == topdown.FailOp })
		}
		mode = "fails"
	}
	switch mode {
	case "fails":
		return lineage.Fails(trace)
	case "full":
		return lineage.Full(trace)
	case "notes":
		return lineage.Notes(trace)
	case "debug":
		return lineage.Debug(trace)
	}
	return nil
}

func runPolicyTests(ctx context.Context, out io.Writer, paths []string, o policyTestOptions) error {
	switch o.format {
	case "", "pretty", "json":
	default:
		return fmt.Errorf("--format %q: want pretty or json", o.format)
	}
	switch o.explain {
	case "", "fails", "full", "notes", "debug":
	default:
		return fmt.Errorf("--explain %q: want fails, full, notes or debug", o.explain)
	}
	if o.threshold < 0 {
		return errors.New("--threshold: want a percentage")
	}
	o.coverage = o.coverage || o.threshold > 0 // as opa test
	modules, store, err := tester.LoadWithParserOptions(paths, nil, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if err != nil {
		return err
	}
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return err
	}
	defer store.Abort(ctx, txn)
	// The compiler opa test uses: print statements, METADATA schema
	// annotations type-checked, data paths checked against the rules.
	compiler := ast.NewCompiler().
		WithCapabilities(ast.CapabilitiesForThisVersion()).
		WithDefaultRegoVersion(ast.RegoV1).
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(true).
		WithUseTypeCheckAnnotations(true).
		WithRewriteTestRules(o.varValues)
	runner := tester.NewRunner().SetCompiler(compiler).SetStore(store).SetModules(modules).SetTimeout(o.timeout).
		CapturePrintOutput(true).EnableTracing(o.verbose || o.varValues).StackTraces(true).Filter(o.run)
	var cov *cover.Cover
	if o.coverage {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov)
	}
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		return err
	}
	// Count failures as the results stream past the reporter.
	failed, ran := 0, 0
	counted := make(chan *tester.Result)
	go func() {
		defer close(counted)
		for r := range ch {
			ran++
			if !r.Pass() && !r.Skip {
				failed++
			}
			r.Trace = o.filterTrace(r.Trace)
			counted <- r
		}
	}()
	var reportErr error
	switch {
	case o.coverage:
		reportErr = tester.JSONCoverageReporter{Cover: cov, Modules: modules, Output: out, Threshold: o.threshold, Verbose: o.verbose}.Report(counted)
	case o.format == "json":
		reportErr = tester.JSONReporter{Output: out}.Report(counted)
	default:
		reportErr = tester.PrettyReporter{Output: out, Verbose: o.verbose, FailureLine: o.varValues, LocalVars: o.varValues}.Report(counted)
	}
	// The coverage reporter stops reading at the first test that errors:
	// let the counting finish before reading its counts.
	for range counted {
	}
	// Exit statuses as opa test's: 2 for failed tests or coverage below the
	// threshold; 1 when the reporter itself fails, which the coverage
	// reporter does when a test fails (it prints no coverage then).
	var below *cover.CoverageThresholdError
	switch {
	case errors.As(reportErr, &below):
		return cli.Exit(fmt.Sprintf("coverage %.2f%% is below the threshold %.2f%%", below.Coverage, below.Threshold), exitTestsFailed)
	case reportErr != nil && failed > 0:
		return cli.Exit(fmt.Sprintf("%d of %d tests failed, so no coverage is reported", failed, ran), 1)
	case failed > 0:
		return cli.Exit(fmt.Sprintf("%d of %d tests failed", failed, ran), exitTestsFailed)
	case reportErr != nil:
		return reportErr
	case ran == 0:
		// opa test exits 0 here unless --fail-on-empty: a CI job that
		// tests nothing is a mistake, so this is always an error.
		return cli.Exit("no tests found (rules named test_* in the given paths)", exitTestsFailed)
	}
	return nil
}
