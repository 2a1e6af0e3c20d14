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
from --user/--group/--scope or read from --input (the JSON input document), and
prints the actions granted on each requested scope exactly as the broker would
sign them. --explain adds the policy's reasons.

With --as USER it diagnoses a real request instead: the user is looked up in
the broker's configured connectors (no password needed), the policy is the
broker's policy.source, and the reasons are always printed. This is the whole
pipeline of a token request except the password check and the signature.

Examples:
   tollgate policy eval --config /etc/tollgate/config.yaml --as bob --scope repository:team/app:pull,push
   tollgate policy eval --policy policies/default --user alice --scope repository:team/app:pull,push
   tollgate policy eval --policy ./policy --user bob --group dev --scope 'repository:team/app:*' --explain
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
			&cli.StringSliceFlag{Name: "group", Aliases: []string{"g"}, Usage: "group (repeat)"},
			&cli.StringFlag{Name: "connector", Value: "local", Usage: "connector name the identity came from"},
			&cli.BoolFlag{Name: "anonymous", Usage: "evaluate for an anonymous caller"},
			&cli.StringSliceFlag{Name: "scope", Aliases: []string{"s"}, Usage: "requested scope (repeat), e.g. repository:team/app:pull,push"},
			&cli.StringFlag{Name: "service", Usage: "service name (default: the broker's default service, else registry.example.com)"},
			&cli.BoolFlag{Name: "explain", Usage: "print the policy's reasons"},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"},
		},
		Action: func(c *cli.Context) error {
			if c.String("as") != "" {
				return evalAs(c)
			}
			if c.String("policy") == "" {
				return errors.New("give --policy (or --as USER with the broker's --config)")
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
			return evalAndPrint(c.Context, c.App.Writer, p, in, c.Bool("explain"), c.String("format"))
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
	id := identity.Identity{Subject: c.String("user"), Name: c.String("user"), Groups: c.StringSlice("group"),
		Connector: c.String("connector"), Claims: map[string]any{}}
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
	Input    authz.Input `json:"input"`
}

type evalScope struct {
	Scope   string   `json:"scope"`
	Granted []string `json:"granted"`
	// Denied lists the requested actions that were not granted ("*" when
	// it was asked for and nothing came of it).
	Denied []string `json:"denied"`
}

func evalAndPrint(ctx context.Context, w io.Writer, p *policies.Policy, in authz.Input, explain bool, format string) error {
	e := policies.NewEngine(0, 0)
	e.Swap(p)
	d, err := e.Authorize(ctx, in)
	if err != nil {
		return err
	}
	res := evalResult{Revision: d.Revision, TokenTTL: int(d.TokenTTL / time.Second), Input: in}
	for _, g := range d.Grants(in.Scopes) {
		res.Scopes = append(res.Scopes, evalScope{Scope: g.Scope.String(), Granted: g.Granted, Denied: g.Denied})
	}
	if explain {
		if res.Reasons, err = p.Explain(ctx, in); err != nil {
			return err
		}
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	case "text":
	default:
		return fmt.Errorf("--format %q: want text or json", format)
	}
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
	return nil
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
	return evalAndPrint(ctx, c.App.Writer, p, in, true, c.String("format"))
}
