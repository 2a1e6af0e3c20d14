package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/runtime/info"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/internal/atomicfile"
	"github.com/tollgate/tollgate/policies"
)

// Exit statuses of `policy test`, as `opa test` uses them.
const (
	exitTestsFailed = 2
)

func policyTestCommand() *cli.Command {
	return &cli.Command{
		Name:      "test",
		Usage:     "run Rego unit tests, with the flags, output and exit statuses of `opa test`",
		ArgsUsage: "PATH...",
		Description: `Runs every rule named test_* in the .rego files under the given paths, with
OPA's own loader and test runner, so a team's CI needs only this binary. As
opa test, it loads every .rego, .json and .yaml file under the paths (--ignore
to leave some out; -b to load each path as a bundle) and exits 0 when all
tests pass, 2 when a test fails, errors or is skipped (todo_test_*; -z makes
skipped tests pass) or the coverage is below --threshold, 1 on any other error
(a failing test under --coverage too; no test run under --fail-on-empty).

Beyond opa test: the input schema (tollgate policy schema) types every use of
input, so a test of a policy reading input.identity.subjct fails to compile
(--schema to use another schema file or directory, --no-schema for none), and
the package --query (data.registry.authz) must fit the decision schema, so
token_ttl := "300" fails too.

The output is opa test's: the same text (-v adds the trace of each failure,
--explain chooses which trace), --format json for the results as JSON,
--coverage for the coverage report as JSON (--threshold implies --coverage),
--bench for benchmarks (--format gobench as go test -bench).

Examples:
   tollgate policy test policies/default
   tollgate policy test policies/default -v --run 'test_guest'
   tollgate policy test --format json policies/default
   tollgate policy test --coverage --threshold 90 policies/default
   tollgate policy test --v0-compatible --no-schema --ignore '*.yaml' legacy/
   tollgate policy test --against-log /var/log/tollgate/decisions.log policies/default

With --against-log FILE it runs no test: it decides the input of every line
of a decision log (tollgate's decision_log file, or OPA's decision logs of the
same package) with the policy in PATH and prints each decision that changes,
as the token would be signed, with its input; exit status 2 when any does,
unless --allow-changes.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print every test and its print() output"},
			&cli.StringFlag{Name: "run", Aliases: []string{"r"}, Usage: "run only tests whose name matches this regular expression"},
			&cli.BoolFlag{Name: "coverage", Aliases: []string{"c"}, Usage: "report line coverage as JSON (as opa test --coverage)"},
			&cli.StringSliceFlag{Name: "coverage-runs", Value: cli.NewStringSlice(string(cover.KindIndexExcluded), string(cover.KindEarlyExit)),
				Usage: "extra coverage passes that say why a range is not covered: index_excluded, early_exit (implies --coverage; \"\" for none)"},
			&cli.Float64Flag{Name: "threshold", Usage: "fail below this coverage percentage (implies --coverage)"},
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "pretty", Usage: "pretty, json or gobench (with --bench; --coverage always prints JSON)"},
			&cli.StringFlag{Name: "explain", Value: "fails", Usage: "which trace -v shows for a failure: fails, full, notes or debug (implies -v)"},
			&cli.BoolFlag{Name: "var-values", Usage: "show the failing line and its local variables' values"},
			&cli.StringFlag{Name: "sort", Value: "none", Usage: "order of --format json results: none or duration"},
			&cli.IntFlag{Name: "max-errors", Aliases: []string{"m"}, Value: ast.CompileErrorLimitDefault, Usage: "compile errors reported before compiling stops"},
			&cli.DurationFlag{Name: "timeout", Usage: "time limit for each test (default 5s, 30s with --bench)"},
			&cli.StringSliceFlag{Name: "ignore", Usage: "file and directory names to leave out of loading, as globs (repeat; '.*' leaves out hidden files)"},
			&cli.BoolFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "load each path as a bundle (a directory or a .tar.gz)"},
			&cli.BoolFlag{Name: "v0-compatible", Usage: "parse Rego as OPA before 1.0 did (no if/contains required)"},
			&cli.StringFlag{Name: "capabilities", Usage: "OPA capabilities: a JSON file or an OPA version (e.g. 0.70.0) whose built-ins the policy may use"},
			&cli.BoolFlag{Name: "exit-zero-on-skipped", Aliases: []string{"z"}, Usage: "skipped tests (todo_test_*) do not fail the run"},
			&cli.BoolFlag{Name: "fail-on-empty", Usage: "exit 1 when no test ran"},
			&cli.BoolFlag{Name: "bench", Usage: "benchmark the tests instead of checking them"},
			&cli.BoolFlag{Name: "benchmem", Value: true, Usage: "report memory allocations with --bench"},
			&cli.IntFlag{Name: "count", Value: 1, Usage: "run the tests or benchmarks this many times"},
			&cli.IntFlag{Name: "parallel", Aliases: []string{"p"}, Usage: "tests run at once (default: the number of CPUs)"},
			&cli.StringFlag{Name: "schema", Aliases: []string{"s"}, Usage: "input schema: a JSON schema file, or a directory of schemas as opa's -s (default: tollgate's input schema)"},
			&cli.BoolFlag{Name: "no-schema", Usage: "do not type-check input against any schema (as opa test without -s)"},
			&cli.StringFlag{Name: "query", Value: policies.DefaultQuery, Usage: "package of the decision rules checked against the decision schema"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "run again whenever a file under the paths changes, until Ctrl-C"},
			&cli.StringFlag{Name: "against-log", Usage: "instead of the tests, replay this decision log (tollgate's or OPA's; - for stdin) through the policy in PATH and print every decision that changes"},
			&cli.BoolFlag{Name: "allow-changes", Usage: "with --against-log: exit 0 even when decisions change"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return errors.New("give at least one path with .rego files")
			}
			if log := c.String("against-log"); log != "" {
				if c.NArg() != 1 {
					return errors.New("--against-log: give one policy (a bundle directory, file or URL)")
				}
				return replayDecisionLog(c.Context, c.App.Writer, c.Args().First(), log, replayOptions{
					query: c.String("query"), format: c.String("format"), allowChanges: c.Bool("allow-changes")})
			}
			o := policyTestOptions{
				verbose: c.Bool("verbose") || c.IsSet("explain"), run: c.String("run"), coverage: c.Bool("coverage"),
				threshold: c.Float64("threshold"), timeout: c.Duration("timeout"),
				format: c.String("format"), varValues: c.Bool("var-values"),
				ignore: c.StringSlice("ignore"), bundle: c.Bool("bundle"), v0: c.Bool("v0-compatible"),
				capabilities: c.String("capabilities"), skipExitZero: c.Bool("exit-zero-on-skipped"),
				failOnEmpty: c.Bool("fail-on-empty"), bench: c.Bool("bench"), benchMem: c.Bool("benchmem"),
				count: c.Int("count"), parallel: c.Int("parallel"), schema: c.String("schema"),
				noSchema: c.Bool("no-schema"), query: c.String("query"), errOut: c.App.ErrWriter,
				sort: c.String("sort"), maxErrors: c.Int("max-errors"),
			}
			// Comma-separated or repeated, as opa's flag; "" for none.
			for _, k := range strings.Split(strings.Join(c.StringSlice("coverage-runs"), ","), ",") {
				if k != "" {
					o.coverageRuns = append(o.coverageRuns, cover.Kind(k))
				}
			}
			o.coverage = o.coverage || c.IsSet("coverage-runs") // as opa test
			if c.IsSet("explain") {
				o.explain = c.String("explain")
			}
			if c.Bool("watch") {
				ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
				defer stop()
				return watchPolicyTests(ctx, c.App.Writer, c.Args().Slice(), o, time.Second)
			}
			return runPolicyTests(c.Context, c.App.Writer, c.Args().Slice(), o)
		},
	}
}

type policyTestOptions struct {
	verbose      bool
	run          string
	coverage     bool
	threshold    float64
	timeout      time.Duration
	format       string // pretty, json or gobench
	explain      string // trace filter of -v: "" (notes and fails), fails, full, notes, debug
	varValues    bool
	ignore       []string
	bundle       bool
	v0           bool
	capabilities string // file or OPA version; "" for this OPA's
	skipExitZero bool
	failOnEmpty  bool
	bench        bool
	benchMem     bool
	count        int
	parallel     int
	schema       string // input schema path; "" for tollgate's
	noSchema     bool
	query        string
	errOut       io.Writer
	sort         string       // of JSON results: none ("") or duration
	maxErrors    int          // compile errors before the compiler stops
	coverageRuns []cover.Kind // the coverage report's extra passes
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

func (o policyTestOptions) validate() error {
	switch o.format {
	case "", "pretty", "json":
	case "gobench":
		if !o.bench {
			return errors.New("--format gobench: only with --bench")
		}
	default:
		return fmt.Errorf("--format %q: want pretty, json or gobench", o.format)
	}
	switch o.explain {
	case "", "fails", "full", "notes", "debug":
	default:
		return fmt.Errorf("--explain %q: want fails, full, notes or debug", o.explain)
	}
	if o.threshold < 0 || o.threshold > 100 {
		return errors.New("--threshold: want a percentage between 0 and 100")
	}
	if o.bench && (o.coverage || o.threshold > 0) {
		return errors.New("--bench: coverage is not reported when benchmarking")
	}
	switch o.sort {
	case "", "none", "duration":
	default:
		return fmt.Errorf("--sort %q: want none or duration", o.sort)
	}
	for _, k := range o.coverageRuns {
		if k != cover.KindIndexExcluded && k != cover.KindEarlyExit {
			return fmt.Errorf("--coverage-runs %q: want %s or %s", k, cover.KindIndexExcluded, cover.KindEarlyExit)
		}
	}
	if o.noSchema && o.schema != "" {
		return errors.New("give --schema or --no-schema, not both")
	}
	return nil
}

// parserOptions are opa test's: its Rego version and capabilities, and
// METADATA annotations read (schemas, custom data).
func (o policyTestOptions) parserOptions() (ast.ParserOptions, error) {
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}
	if o.v0 {
		popts.RegoVersion = ast.RegoV0
	}
	if o.capabilities != "" {
		// As opa's --capabilities: a file, else a version.
		c, errFile := ast.LoadCapabilitiesFile(o.capabilities)
		if errFile != nil {
			var errVersion error
			if c, errVersion = ast.LoadCapabilitiesVersion(o.capabilities); errVersion != nil {
				return popts, fmt.Errorf("--capabilities %s: no such file or OPA version", o.capabilities)
			}
		}
		popts.Capabilities = c
	}
	return popts, nil
}

// ignoreFilter leaves out of loading what --ignore names, as opa test's.
func (o policyTestOptions) ignoreFilter(abspath string, info os.FileInfo, depth int) bool {
	for _, glob := range o.ignore {
		if loader.GlobExcludeName(glob, 1)(abspath, info, depth) {
			return true
		}
	}
	return false
}

// policyTests is what the paths hold: modules (and bundles with -b) and
// their data in a store.
type policyTests struct {
	modules map[string]*ast.Module
	bundles map[string]*bundle.Bundle
	store   storage.Store
}

func loadPolicyTests(paths []string, o policyTestOptions, popts ast.ParserOptions) (policyTests, error) {
	var t policyTests
	var err error
	if !o.bundle {
		t.modules, t.store, err = tester.LoadWithParserOptions(paths, o.ignoreFilter, popts)
		return t, err
	}
	if t.bundles, t.store, err = tester.LoadBundlesWithParserOptions(paths, o.ignoreFilter, popts); err != nil {
		return t, err
	}
	// The coverage report names the bundles' modules.
	t.modules = map[string]*ast.Module{}
	for name, b := range t.bundles {
		maps.Copy(t.modules, b.ParsedModules(name))
	}
	return t, nil
}

// testCompiler is the compiler opa test uses (print statements, METADATA
// schema annotations type-checked, data paths checked against the rules),
// with tollgate's input schema and the decision check added.
func testCompiler(ctx context.Context, o policyTestOptions, popts ast.ParserOptions, store storage.Store, txn storage.Transaction) (*ast.Compiler, error) {
	var schemas *ast.SchemaSet
	var err error
	switch {
	case o.noSchema:
	case o.schema != "":
		schemas, err = loader.Schemas(o.schema)
	default:
		schemas, err = policies.SchemaSet()
	}
	if err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	output, err := policies.OutputCheck(o.query)
	if err != nil {
		return nil, err
	}
	caps := popts.Capabilities
	if caps == nil {
		caps = ast.CapabilitiesForThisVersion()
	}
	return ast.NewCompiler().
		SetErrorLimit(o.maxErrors).
		WithCapabilities(caps).
		WithDefaultRegoVersion(popts.RegoVersion).
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(!o.bench).
		WithSchemas(schemas).
		WithUseTypeCheckAnnotations(true).
		WithRewriteTestRules(o.varValues).
		WithStageAfterID(ast.StageCheckTypes, output), nil
}

func runPolicyTests(ctx context.Context, out io.Writer, paths []string, o policyTestOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	o.coverage = o.coverage || o.threshold > 0 // as opa test
	popts, err := o.parserOptions()
	if err != nil {
		return err
	}
	loaded, err := loadPolicyTests(paths, o, popts)
	if err != nil {
		return err
	}
	txn, err := loaded.store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return err
	}
	defer loaded.store.Abort(ctx, txn)
	compiler, err := testCompiler(ctx, o, popts, loaded.store, txn)
	if err != nil {
		return err
	}
	runtimeInfo, err := info.New() // opa.runtime() in tests, as under opa test
	if err != nil {
		return err
	}
	timeout := o.timeout
	switch {
	case timeout > 0:
	case o.bench:
		timeout = 30 * time.Second
	default:
		timeout = 5 * time.Second
	}
	runner := tester.NewRunner().SetCompiler(compiler).SetStore(loaded.store).SetModules(loaded.modules).
		SetBundles(loaded.bundles).SetRuntime(runtimeInfo).SetTimeout(timeout).SetParallel(o.parallel).
		CapturePrintOutput(true).EnableTracing(o.verbose || o.varValues).StackTraces(true).Filter(o.run).
		SetCoverageRuns(o.coverageRuns)
	var cov *cover.Cover
	if o.coverage {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov)
	}
	for range max(o.count, 1) {
		if err := runTestsOnce(ctx, txn, runner, o.reporter(out, cov, loaded.modules), o); err != nil {
			return err
		}
	}
	return nil
}

// watchPolicyTests is --watch: the tests run, and run again each time a
// file under paths changes (polled every interval, as the broker's file
// watchers do), until ctx ends; a failing run is reported, not fatal. The
// separator is opa test --watch's.
func watchPolicyTests(ctx context.Context, out io.Writer, paths []string, o policyTestOptions, interval time.Duration) error {
	last := atomicfile.Stamp(paths...)
	for {
		if err := runPolicyTests(ctx, out, paths, o); err != nil {
			fmt.Fprintln(o.errOut, err)
		}
		fmt.Fprintln(out, strings.Repeat("*", 80))
		fmt.Fprintln(out, "Watching for changes ...")
		poll, changed := context.WithCancel(ctx)
		atomicfile.Poll(poll, interval, func() {
			if now := atomicfile.Stamp(paths...); now != last {
				last = now
				changed()
			}
		})
		changed()
		if ctx.Err() != nil {
			return nil // Ctrl-C ends watching, as in opa
		}
	}
}

// reporter is opa test's for the chosen output.
func (o policyTestOptions) reporter(out io.Writer, cov *cover.Cover, modules map[string]*ast.Module) tester.Reporter {
	switch {
	case o.coverage:
		return tester.JSONCoverageReporter{Cover: cov, Modules: modules, Output: out, Threshold: o.threshold, Verbose: o.verbose}
	case o.format == "json":
		return tester.JSONReporter{Output: out, Sort: o.sort}
	case o.sort == "duration":
		fmt.Fprintln(o.errOut, "warning: --sort is only supported with JSON format") // opa's words
	}
	return tester.PrettyReporter{Output: out, Verbose: o.verbose, FailureLine: o.varValues, LocalVars: o.varValues,
		BenchmarkResults: o.bench, BenchMarkShowAllocations: o.benchMem, BenchMarkGoBenchFormat: o.format == "gobench"}
}

// runTestsOnce runs the tests (or benchmarks) and reports them, returning
// an error with opa test's exit status when the run fails.
func runTestsOnce(ctx context.Context, txn storage.Transaction, runner *tester.Runner, reporter tester.Reporter, o policyTestOptions) error {
	var ch chan *tester.Result
	var err error
	if o.bench {
		testing.Init() // the benchmark runner reads the testing package's flags, as in opa
		ch, err = runner.RunBenchmarks(ctx, txn, tester.BenchmarkOptions{ReportAllocations: o.benchMem})
	} else {
		ch, err = runner.RunTests(ctx, txn)
	}
	if err != nil {
		return err
	}
	// Count the outcomes as the results stream past the reporter.
	failed, skipped, ran := 0, 0, 0
	counted := make(chan *tester.Result)
	go func() {
		defer close(counted)
		for r := range ch {
			ran++
			switch {
			case r.Skip:
				skipped++
			case !r.Pass():
				failed++
			}
			r.Trace = o.filterTrace(r.Trace)
			counted <- r
		}
	}()
	reportErr := reporter.Report(counted)
	// The coverage reporter stops reading at the first test that errors:
	// let the counting finish before reading its counts.
	for range counted {
	}
	return testsExit(reportErr, failed, skipped, ran, o)
}

// testsExit is opa test's exit status: 2 for failed (or, without -z,
// skipped) tests or coverage below the threshold; 1 when the reporter itself
// fails, which the coverage reporter does when a test fails (it prints no
// coverage then), or when nothing ran under --fail-on-empty.
func testsExit(reportErr error, failed, skipped, ran int, o policyTestOptions) error {
	if o.skipExitZero {
		skipped = 0
	}
	var below *cover.CoverageThresholdError
	switch {
	case errors.As(reportErr, &below) && !o.bench:
		return cli.Exit(fmt.Sprintf("coverage %.2f%% is below the threshold %.2f%%", below.Coverage, below.Threshold), exitTestsFailed)
	case reportErr != nil && failed > 0:
		return cli.Exit(fmt.Sprintf("%d of %d tests failed, so no coverage is reported", failed, ran), 1)
	case reportErr != nil:
		return reportErr
	case ran == 0 && o.failOnEmpty:
		return cli.Exit("no tests were run", 1)
	case failed > 0 && skipped > 0:
		return cli.Exit(fmt.Sprintf("%d of %d tests failed, %d skipped", failed, ran, skipped), exitTestsFailed)
	case failed > 0:
		return cli.Exit(fmt.Sprintf("%d of %d tests failed", failed, ran), exitTestsFailed)
	case skipped > 0:
		return cli.Exit(fmt.Sprintf("%d of %d tests skipped (todo_test_*; -z to pass them)", skipped, ran), exitTestsFailed)
	}
	return nil
}
