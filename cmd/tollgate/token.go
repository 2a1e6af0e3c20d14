package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/internal/serve"
)

// exitProblems is the exit status of diagnostics that found problems.
const exitProblems = 1

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "diagnose registry tokens",
		Subcommands: []*cli.Command{
			{
				Name:      "inspect",
				Usage:     "decode a registry token and say whether registries would accept it",
				ArgsUsage: "[TOKEN|-]",
				Description: `Prints the token's header, claims and access list, then checks what
distribution 2.8 and 3.x check: the algorithm, aud as a string, the x5c chain
against the registry's rootcertbundle, the kid against the broker's published
keys, the signature, the expiry, and (with --need) whether the access list
covers a request. Each finding has a one-line explanation. Exit status 1 when
any check finds a problem. The token comes from the argument or standard input.

Examples:
   tollgate token inspect --broker http://localhost:5001 --registry-config registry.yml --need repository:team/app:push "$TOKEN"
   curl -s -u alice 'https://auth.example.com/token?service=registry.example.com&scope=repository:team/app:pull' | jq -r .token | tollgate token inspect -`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "broker", Usage: "the broker's base URL: its /.well-known/jwks.json is fetched"},
					&cli.StringFlag{Name: "jwks", Usage: "the broker's JWKS, a file or URL (instead of --broker)"},
					&cli.StringFlag{Name: "registry-config", Usage: "the registry's config.yml: issuer, service and rootcertbundle come from its auth.token"},
					&cli.StringFlag{Name: "rootcertbundle", Usage: "the registry's rootcertbundle (PEM)"},
					&cli.StringFlag{Name: "issuer", Usage: "the issuer the registry expects"},
					&cli.StringFlag{Name: "service", Usage: "the service (audience) the registry expects (default: --registry-config's, else the broker's default service)"},
					&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "broker configuration file, for the default --service (default: the development state in --state-dir)", EnvVars: []string{"TOLLGATE_CONFIG"}},
					&cli.StringFlag{Name: "state-dir", Value: ".tollgate", Usage: "development mode state directory"},
					&cli.StringSliceFlag{Name: "need", Usage: "a scope the request needs, e.g. repository:team/app:push (repeat)"},
					&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"},
				},
				Action: tokenInspect,
			},
			{
				Name:  "revoke",
				Usage: "stop refresh tokens before they expire, on every replica",
				Description: `Revokes one refresh token (--token, or its id with --id) or every refresh
token of a subject issued until now (--subject). The revocation goes to the
broker's Redis when one is configured (every replica sees it at once), else to
revocations.json in its state_dir, which the broker reloads within a second.
Access tokens are short-lived and are not revoked; a revoked subject can still
log in with valid credentials (remove the user for that).

Examples:
   tollgate token revoke --config /etc/tollgate/config.yaml --subject bob
   tollgate token revoke --config /etc/tollgate/config.yaml --token "$REFRESH_TOKEN"
   tollgate token revoke --config /etc/tollgate/config.yaml --id 4Q2ZJ7...`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "broker configuration file (default: the development state in --state-dir)", EnvVars: []string{"TOLLGATE_CONFIG"}},
					&cli.StringFlag{Name: "state-dir", Value: ".tollgate", Usage: "development mode state directory"},
					&cli.StringFlag{Name: "token", Usage: "a refresh token to revoke"},
					&cli.StringFlag{Name: "id", Usage: "the id (jti) of a refresh token to revoke"},
					&cli.StringFlag{Name: "subject", Usage: "revoke every refresh token of this subject issued until now"},
				},
				Action: tokenRevoke,
			},
		},
	}
}

func tokenInspect(c *cli.Context) error {
	raw := c.Args().First()
	if raw == "" || raw == "-" {
		data, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		if err != nil {
			return err
		}
		raw = string(data)
	}
	if strings.TrimSpace(raw) == "" {
		return errors.New("give a token as the argument or on standard input")
	}
	o := broker.InspectOptions{Issuer: c.String("issuer"), Service: c.String("service"), Need: c.StringSlice("need"), Now: time.Now()}
	bundle := c.String("rootcertbundle")
	if path := c.String("registry-config"); path != "" {
		rc, err := readRegistryConfig(path)
		if err != nil {
			return err
		}
		o.Issuer = cmp.Or(o.Issuer, rc.Issuer)
		o.Service = cmp.Or(o.Service, rc.Service)
		bundle = cmp.Or(bundle, rc.RootCertBundle)
	}
	if o.Service == "" {
		var err error
		if o.Service, err = configuredService(c); err != nil {
			return err
		}
	}
	if bundle != "" {
		data, err := os.ReadFile(bundle)
		if err != nil {
			return err
		}
		o.RootCertBundle = data
	}
	jwks := c.String("jwks")
	if b := c.String("broker"); b != "" && jwks == "" {
		jwks = strings.TrimSuffix(b, "/") + "/.well-known/jwks.json"
	}
	if jwks != "" {
		data, err := readFileOrURL(jwks)
		if err != nil {
			return fmt.Errorf("jwks: %w", err)
		}
		o.JWKS = data
	}
	in := broker.Inspect(raw, o)
	switch c.String("format") {
	case "json":
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(in); err != nil {
			return err
		}
	case "text":
		printInspection(c.App.Writer, in)
	default:
		return fmt.Errorf("--format %q: want text or json", c.String("format"))
	}
	if n := in.Problems(); n > 0 {
		return cli.Exit(fmt.Sprintf("%d problem(s) found", n), exitProblems)
	}
	return nil
}

func printInspection(w io.Writer, in *broker.Inspection) {
	if len(in.Header) > 0 {
		x5c := 0
		if chain, ok := in.Header["x5c"].([]any); ok {
			x5c = len(chain)
		}
		fmt.Fprintf(w, "header: alg=%v kid=%v x5c=%d certificate(s)\n", in.Header["alg"], in.Header["kid"], x5c)
		fmt.Fprintf(w, "claims: iss=%v sub=%q aud=%v", in.Claims["iss"], in.Claims["sub"], in.Claims["aud"])
		for _, k := range []string{"iat", "nbf", "exp"} {
			if n, ok := in.Claims[k].(float64); ok {
				fmt.Fprintf(w, " %s=%s", k, time.Unix(int64(n), 0).UTC().Format(time.RFC3339))
			}
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "access:")
		if len(in.Access) == 0 {
			fmt.Fprintln(w, "  (nothing)")
		}
		for _, a := range in.Access {
			fmt.Fprintf(w, "  %s:%s: %s\n", a.Type, a.Name, strings.Join(a.Actions, ","))
		}
	}
	printFindings(w, in.Findings)
}

// printFindings prints diagnostics one per line, problems in capitals.
func printFindings(w io.Writer, fs []broker.Finding) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range fs {
		level := f.Level
		if level == "problem" {
			level = "PROBLEM"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", level, f.Check, f.Message)
	}
	tw.Flush()
}

// readFileOrURL reads a local file or fetches an http(s) URL (10 s limit).
func readFileOrURL(loc string) ([]byte, error) {
	if !strings.HasPrefix(loc, "http://") && !strings.HasPrefix(loc, "https://") {
		return os.ReadFile(loc)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(loc)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", loc, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 4<<20))
}

// registryAuth is the auth.token section of a distribution config.yml.
type registryAuth struct {
	Realm          string `yaml:"realm"`
	Service        string `yaml:"service"`
	Issuer         string `yaml:"issuer"`
	RootCertBundle string `yaml:"rootcertbundle"`
	JWKS           string `yaml:"jwks"`
	// Addr is http.addr: where the registry listens.
	Addr string `yaml:"-"`
}

// readRegistryConfig reads what the broker must agree with from a
// registry's config.yml; a relative rootcertbundle is taken relative to it.
func readRegistryConfig(path string) (*registryAuth, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		HTTP struct {
			Addr string `yaml:"addr"`
		} `yaml:"http"`
		Auth struct {
			Token *registryAuth `yaml:"token"`
		} `yaml:"auth"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Auth.Token == nil {
		return nil, fmt.Errorf("%s: no auth.token section: the registry does not use a token service", path)
	}
	rc := doc.Auth.Token
	rc.Addr = doc.HTTP.Addr
	if rc.RootCertBundle != "" && !filepath.IsAbs(rc.RootCertBundle) {
		rc.RootCertBundle = filepath.Join(filepath.Dir(path), rc.RootCertBundle)
	}
	return rc, nil
}

func tokenRevoke(c *cli.Context) error {
	set := 0
	for _, f := range []string{"token", "id", "subject"} {
		if c.String(f) != "" {
			set++
		}
	}
	if set != 1 {
		return errors.New("give exactly one of --token, --id and --subject")
	}
	cfg, _, err := loadOrDevConfig(c)
	if err != nil {
		return err
	}
	var store broker.Revocations
	if cfg.Redis != nil {
		rs, err := serve.OpenRedis(cfg, nil, nil)
		if err != nil {
			return err
		}
		defer rs.Close()
		store = rs
	} else if store, err = broker.OpenFileRevocations(cfg.RevocationsFile()); err != nil {
		return err
	}
	now := time.Now()
	// Records outlive every refresh token they could stop.
	until := now.Add(cfg.RefreshTokens.TTL)
	switch {
	case c.String("subject") != "":
		// Tokens carry whole seconds: cover the current second too.
		err = store.RevokeSubject(c.Context, c.String("subject"), now.Truncate(time.Second).Add(time.Second), until)
	case c.String("id") != "":
		err = store.RevokeID(c.Context, c.String("id"), until)
	default:
		var claims jwt.RegisteredClaims
		if _, _, perr := jwt.NewParser().ParseUnverified(strings.TrimSpace(c.String("token")), &claims); perr != nil || claims.ID == "" {
			return fmt.Errorf("--token is not a refresh token with an id (jti): %v", perr)
		}
		if claims.ExpiresAt != nil {
			until = claims.ExpiresAt.Time
		}
		err = store.RevokeID(c.Context, claims.ID, until)
	}
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	fmt.Fprintln(c.App.Writer, "revoked")
	return nil
}
