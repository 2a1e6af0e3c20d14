package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/ast"
	"github.com/open-policy-agent/opa/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/scope"
)

func policyEvalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "show what a policy grants for a request, and why",
		Description: `Evaluates the policy in --policy (a bundle directory) for one request, built
from --user/--group/--claims/--connector/--scope or read from --input (the
JSON input document), and prints the actions granted on each requested scope
exactly as the broker would sign them. What the policy print()s goes to
standard error, as with opa eval (into "prints" with --format json).

--explain answers for every requested action (the allowed rule that granted
it, or that no rule did) and adds the policy's reasons; --explain=MODE (or
--explain MODE) also prints the evaluation's trace as opa eval --explain MODE
does: notes, fails, full or debug.

With --as USER it diagnoses a real request instead: the user is looked up in
the broker's configured connectors (no password needed), the policy is the
broker's policy.source, and the answers and reasons are always printed. This
is the whole pipeline of a token request except the password check and the
signature.

Examples:
   tollgate policy eval --config /etc/tollgate/config.yaml --as bob --scope repository:team/app:pull,push
   tollgate policy eval --policy policies/default --user alice --scope repository:team/app:pull,push
   tollgate policy eval --policy ./policy --user bob --groups dev --groups ops --scope 'repository:team/app:*' --explain
   tollgate policy eval --policy ./policy --user bob --scope repository:team/app:push --explain=fails
   tollgate policy eval --policy ./policy --connector robot --user robot-ci --scope repository:team/app:push --claims '{"robot": {"name": "ci", "service": "", "scopes": [{"type": "repository", "name": "team/*", "actions": ["pull", "push"]}]}}'
   tollgate policy eval --policy ./policy --anonymous --scope repository:library/hello:pull
   tollgate policy eval --policy ./policy --input request.json --format json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "policy", Aliases: []string{"p"}, Usage: "policy: a bundle directory, file or URL (default with --as: the broker's policy.source)"},
			&cli.StringFlag{Name: "as", Usage: "diagnose a real request of this user, looked up in the broker's connectors"},
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "broker configuration file, for the default --service and --as (default: the development state in --state-dir)", EnvVars: []string{"TOLLGATE_CONFIG"}},
			&cli.StringFlag{Name: "state-dir", Value: ".tollgate", Usage: "development mode state directory"},
			&cli.StringFlag{Name: "query", Value: policies.DefaultQuery, Usage: "package of the rules"},
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "input document (JSON file, - for stdin) instead of the flags below"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "subject"},
			&cli.StringSliceFlag{Name: "group", Aliases: []string{"g", "groups"}, Usage: "group (repeat: a group name may hold a comma)"},
			&cli.StringFlag{Name: "claims", Usage: "identity.claims as a JSON object (OIDC claims, LDAP attributes, a robot's {\"robot\": {...}})"},
			&cli.StringFlag{Name: "connector", Value: "local", Usage: "connector name the identity came from (robot for a robot account)"},
			&cli.BoolFlag{Name: "anonymous", Usage: "evaluate for an anonymous caller"},
			&cli.StringSliceFlag{Name: "scope", Aliases: []string{"s"}, Usage: "requested scope (repeat), e.g. repository:team/app:pull,push"},
			&cli.StringFlag{Name: "service", Usage: "service name (default: the broker's default service, else registry.example.com)"},
			explainFlag(),
			&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"},
		},
		Action: func(c *cli.Context) error {
			if c.String("as") != "" {
				return evalAs(c)
			}
			if c.String("policy") == "" {
				return errors.New("give --policy (or --as USER with the broker's --config)")
			}
			explain, err := explainOf(c)
			if err != nil {
				return err
			}
			in, err := evalInput(c)
			if err != nil {
				return err
			}
			b, _, err := (&bundles.Source{Location: c.String("policy")}).Fetch(c.Context, "")
			if err != nil {
				return err
			}
			p, err := policies.Compile(c.Context, b, c.String("query"))
			if err != nil {
				return err
			}
			return evalAndPrint(c.Context, c.App.Writer, c.App.ErrWriter, p, in, explain, c.String("format"))
		},
	}
}

func evalInput(c *cli.Context) (authz.Input, error) {
	if path := c.String("input"); path != "" {
		var r io.Reader = os.Stdin
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				return authz.Input{}, err
			}
			defer f.Close()
			r = f
		}
		var in authz.Input
		dec := json.NewDecoder(r)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return authz.Input{}, fmt.Errorf("input %s: %w", path, err)
		}
		return in, nil
	}
	scopes, err := scope.Parse(c.StringSlice("scope"))
	if err != nil {
		return authz.Input{}, err
	}
	if len(scopes) == 0 {
		return authz.Input{}, errors.New("give at least one --scope (or --input)")
	}
	service := c.String("service")
	if !c.IsSet("service") {
		if service, err = configuredService(c); err != nil {
			return authz.Input{}, err
		}
		service = cmp.Or(service, "registry.example.com")
	}
	claims := map[string]any{}
	if js := c.String("claims"); js != "" {
		if err := json.Unmarshal([]byte(js), &claims); err != nil || claims == nil {
			return authz.Input{}, fmt.Errorf("--claims %s: want a JSON object (%v)", js, err)
		}
	}
	id := identity.Identity{Subject: c.String("user"), Name: c.String("user"), Groups: c.StringSlice("group"),
		Connector: c.String("connector"), Claims: claims}
	if c.Bool("anonymous") || id.Subject == "" {
		id = identity.Anonymous()
	}
	if id.Groups == nil {
		id.Groups = []string{}
	}
	return authz.Input{Service: service, Identity: id, Scopes: scopes,
		Client: authz.Client{IP: "127.0.0.1", UserAgent: "tollgate-policy-eval"}}, nil
}

// evalResult is what `policy eval --format json` prints.
type evalResult struct {
	Revision string      `json:"revision"`
	Scopes   []evalScope `json:"scopes"`
	TokenTTL int         `json:"token_ttl,omitempty"`
	Reasons  []string    `json:"reasons,omitempty"`
	// Prints is what the policy print()ed, in order.
	Prints []string `json:"prints,omitempty"`
	// Explanation is the trace of --explain=MODE, as opa eval prints it.
	Explanation []string    `json:"explanation,omitempty"`
	Input       authz.Input `json:"input"`
}

type evalScope struct {
	Scope   string   `json:"scope"`
	Granted []string `json:"granted"`
	// Denied lists the requested actions that were not granted ("*" when
	// it was asked for and nothing came of it).
	Denied []string `json:"denied"`
	// Answers says, with --explain, why each action was granted or not.
	Answers []evalAnswer `json:"answers,omitempty"`
}

// evalAnswer is the fate of one action on one scope.
type evalAnswer struct {
	Action  string `json:"action"`
	Granted bool   `json:"granted"`
	// Rules are the allowed rules that produced it ("authz.rego:166").
	Rules  []string `json:"rules,omitempty"`
	Answer string   `json:"answer"`
}

func evalAndPrint(ctx context.Context, w, errw io.Writer, p *policies.Policy, in authz.Input, explain, format string) error {
	if format != "text" && format != "json" {
		return fmt.Errorf("--format %q: want text or json", format)
	}
	diag, err := p.Diagnose(ctx, in)
	if err != nil {
		return err
	}
	d := diag.Decision
	res := evalResult{Revision: d.Revision, TokenTTL: int(d.TokenTTL / time.Second), Input: in, Prints: diag.Prints}
	for _, g := range d.Grants(in.Scopes) {
		s := evalScope{Scope: g.Scope.String(), Granted: g.Granted, Denied: g.Denied}
		if explain != "" {
			s.Answers = answers(g, diag.GrantedBy)
		}
		res.Scopes = append(res.Scopes, s)
	}
	if explain != "" {
		res.Reasons = diag.Reasons
		res.Explanation = traceLines(diag.Trace, explain)
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	for _, line := range res.Prints { // as opa eval: print() to standard error
		fmt.Fprintln(errw, line)
	}
	printEval(w, in, res, explain != "")
	return nil
}

// printEval writes res as text.
func printEval(w io.Writer, in authz.Input, res evalResult, explain bool) {
	who := in.Identity.Subject
	if in.Identity.Anonymous {
		who = "anonymous"
	}
	fmt.Fprintf(w, "policy revision %s, %s (groups: %s), service %s\n", res.Revision, who, strings.Join(in.Identity.Groups, ", "), in.Service)
	for _, s := range res.Scopes {
		granted := strings.Join(s.Granted, ",")
		if granted == "" {
			granted = "(nothing)"
		}
		line := fmt.Sprintf("  %-40s granted: %s", s.Scope, granted)
		if len(s.Denied) > 0 {
			line += "; denied: " + strings.Join(s.Denied, ",")
		}
		fmt.Fprintln(w, line)
		for _, a := range s.Answers {
			fmt.Fprintf(w, "    %s: %s\n", a.Action, a.Answer)
		}
	}
	if res.TokenTTL > 0 {
		fmt.Fprintf(w, "  token_ttl: %ds (clamped to the service's maximum by the broker)\n", res.TokenTTL)
	}
	if explain {
		if len(res.Reasons) == 0 {
			fmt.Fprintln(w, "  reasons: (the policy gave none)")
		}
		for _, r := range res.Reasons {
			fmt.Fprintf(w, "  because: %s\n", r)
		}
	}
	if len(res.Explanation) > 0 {
		fmt.Fprintln(w)
		for _, l := range res.Explanation {
			fmt.Fprintln(w, l)
		}
	}
}

// answers says for each action granted or asked on g's scope which
// allowed rules produced it, or that none did. An action granted because
// the policy allowed "*" is credited to the rules that allowed "*".
func answers(g authz.Grant, by map[string][]*ast.Location) []evalAnswer {
	var out []evalAnswer
	for _, a := range g.Granted {
		locs := by[policies.GrantKey(g.Scope.Type, g.Scope.Name, a)]
		if len(locs) == 0 {
			locs = by[policies.GrantKey(g.Scope.Type, g.Scope.Name, "*")]
		}
		ans := evalAnswer{Action: a, Granted: true}
		for _, l := range locs {
			ans.Rules = append(ans.Rules, fmt.Sprintf("%s:%d", strings.TrimPrefix(l.File, "/"), l.Row))
		}
		ans.Answer = "granted by rule at " + strings.Join(ans.Rules, ", ")
		if len(ans.Rules) == 0 {
			ans.Answer = "granted (the rule could not be traced)"
		}
		out = append(out, ans)
	}
	for _, a := range g.Denied {
		what := a
		if a == "*" {
			what = "any action"
		}
		out = append(out, evalAnswer{Action: a, Answer: fmt.Sprintf("denied: no rule granted %s", what)})
	}
	return out
}

// traceLines renders the part of trace that opa eval --explain=mode shows,
// as opa eval prints it (with locations).
func traceLines(trace []*topdown.Event, mode string) []string {
	var events []*topdown.Event
	switch mode {
	case "notes":
		events = lineage.Notes(trace)
	case "fails":
		events = lineage.Fails(trace)
	case "full":
		events = lineage.Full(trace)
	case "debug":
		events = lineage.Debug(trace)
	default: // reasons only
		return nil
	}
	if len(events) == 0 {
		return nil
	}
	var buf strings.Builder
	topdown.PrettyTraceWithOpts(&buf, events, topdown.PrettyTraceOptions{Locations: true})
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

// explainValue is --explain: bare, it asks for the per-action answers and
// the policy's reasons; with a mode, for opa's trace of that mode too. It
// is a boolean flag to the flag parser, so "--explain" alone still parses.
type explainValue struct{ mode string }

func (v *explainValue) IsBoolFlag() bool { return true }
func (v *explainValue) Get() any         { return v.String() }
func (v *explainValue) String() string {
	if v == nil {
		return ""
	}
	return v.mode
}

func (v *explainValue) Set(s string) error {
	switch s {
	case "true":
		v.mode = "reasons"
	case "false":
		v.mode = ""
	case "reasons", "notes", "fails", "full", "debug":
		v.mode = s
	default:
		return fmt.Errorf("want reasons, notes, fails, full or debug, not %q", s)
	}
	return nil
}

// optionalValueFlag is a flag whose value is optional: flagsFirst must
// not take the next word as its value.
type optionalValueFlag struct{ *cli.GenericFlag }

func (optionalValueFlag) TakesValue() bool { return false }

func explainFlag() cli.Flag {
	return optionalValueFlag{&cli.GenericFlag{Name: "explain", Value: &explainValue{},
		Usage: "answer for every action and print the policy's reasons; --explain=notes|fails|full|debug adds opa's trace"}}
}

// explainOf reads --explain, taking "--explain full" (as opa spells it) as
// --explain=full: the mode is then the command's one argument.
func explainOf(c *cli.Context) (string, error) {
	v, _ := c.Generic("explain").(*explainValue)
	mode := v.String()
	switch {
	case c.NArg() == 0:
		return mode, nil
	case c.NArg() == 1 && mode == "reasons":
		err := v.Set(c.Args().First())
		return v.String(), err
	}
	return "", fmt.Errorf("unexpected argument %q (flags take their values as --flag VALUE)", c.Args().First())
}

// evalAs is `policy eval --as USER`: the broker's connectors find the user,
// the broker's policy decides, and the reasons say why.
func evalAs(c *cli.Context) error {
	cfg, _, err := loadOrDevConfig(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel() // stops the connectors' file watchers
	log := newLogger(config.LogConfig{Level: "error", Format: "text"}, c.App.ErrWriter)
	chain, err := cfg.BuildChain(config.ConnectorEnv{Ctx: ctx, Log: log, Cache: identity.NewCredentialCache(0, 0)})
	if err != nil {
		return err
	}
	user := c.String("as")
	var found *identity.Identity
	for _, ic := range cfg.Identity {
		id, ok, err := chain.Refresh(identity.WithoutCredential(ctx), identity.Identity{Subject: user, Connector: ic.Name})
		if err != nil {
			fmt.Fprintf(c.App.Writer, "connector %s: %v\n", ic.Name, err)
			if rejected := (*identity.RejectedError)(nil); errors.As(err, &rejected) {
				return cli.Exit("the broker refuses this user before any policy runs", exitProblems)
			}
			continue
		}
		if ok {
			id := identity.Normalize(id)
			found = &id
			break
		}
	}
	if found == nil {
		return cli.Exit(fmt.Sprintf("no connector knows %q: the broker answers 401 (invalid user name or password) before any policy runs", user), exitProblems)
	}
	fmt.Fprintf(c.App.Writer, "identity: %s via connector %s (groups: %s)\n", found.Subject, found.Connector, strings.Join(found.Groups, ", "))

	scopes, err := scope.Parse(c.StringSlice("scope"))
	if err != nil {
		return err
	}
	if len(scopes) == 0 {
		return errors.New("give at least one --scope")
	}
	service := c.String("service")
	if !c.IsSet("service") {
		services, err := cfg.LoadServices()
		if err != nil {
			return err
		}
		svc, err := pickService(services, "")
		if err != nil {
			return err
		}
		service = svc.Name
	}
	src, err := cfg.PolicySource() // the broker's own, with its signature and token
	if err != nil {
		return err
	}
	if p := c.String("policy"); p != "" {
		src = &bundles.Source{Location: p, Limits: src.Limits}
	}
	b, _, err := src.Fetch(ctx, "")
	if err != nil {
		return err
	}
	p, err := policies.Compile(ctx, b, cfg.Policy.Query)
	if err != nil {
		return err
	}
	in := authz.Input{Service: service, Identity: *found, Scopes: scopes,
		Client: authz.Client{IP: "127.0.0.1", UserAgent: "tollgate-policy-eval"}}
	explain, err := explainOf(c)
	if err != nil {
		return err
	}
	return evalAndPrint(ctx, c.App.Writer, c.App.ErrWriter, p, in, cmp.Or(explain, "reasons"), c.String("format"))
}
