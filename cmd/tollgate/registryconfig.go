package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/internal/atomicfile"
)

func registryConfigCommand() *cli.Command {
	return &cli.Command{
		Name:  "registry-config",
		Usage: "print a registry's auth.token configuration and write its certificate bundle",
		Description: `Prints the auth.token section for a distribution (2.8 or 3.x) registry of one
service, and writes the certificate bundle its rootcertbundle points at (every
published key; run it again after a key rotation and restart the registry).

--format yaml (default) prints the section for the registry's config.yml;
--format env prints it as REGISTRY_AUTH_TOKEN_* environment variables;
--format jwks (distribution 3.x) also writes the published keys as a JSON Web
Key Set to --jwks and names it in auth.token.jwks. The bundle stays: tokens
carry their certificate (x5c), which distribution 3 checks against
rootcertbundle; the JWKS is what it trusts for tokens without x5c.

The realm is the token URL CLIENTS reach. Current clients refuse realms on
private or loopback addresses unless the realm's host is the registry's own host
name: serve the realm on a public name, or on the registry's host under a path
(https://registry.example.com/token through the same ingress).

Examples:
   tollgate registry-config --config config.yaml --bundle /etc/registry/token-ca.pem
   tollgate registry-config --config config.yaml --service notary.example.com --bundle notary-ca.pem
   tollgate registry-config --config config.yaml --bundle /etc/registry/token-ca.pem --format env
   tollgate registry-config --config config.yaml --bundle /etc/registry/token-ca.pem --format jwks --jwks /etc/registry/token.jwks`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "broker configuration file (default: the development state in --state-dir)", EnvVars: []string{"TOLLGATE_CONFIG"}},
			&cli.StringFlag{Name: "state-dir", Value: ".tollgate", Usage: "development mode state directory"},
			&cli.StringFlag{Name: "service", Usage: "service name (default: the default service)"},
			&cli.StringFlag{Name: "bundle", Usage: "where to write the certificate bundle, the registry's rootcertbundle (required with --config; development: the state directory's registry-bundle.pem)"},
			&cli.StringFlag{Name: "format", Value: "yaml", Usage: "yaml (config.yml's auth section), env (REGISTRY_AUTH_TOKEN_* variables) or jwks (yaml with auth.token.jwks, distribution 3.x)"},
			&cli.StringFlag{Name: "jwks", Usage: "with --format jwks: where to write the JSON Web Key Set the registry's auth.token.jwks points at"},
		},
		Action: func(c *cli.Context) error {
			// Only the operator knows where the registry reads its bundle;
			// a default would drop it into whatever directory this runs in.
			if c.String("config") != "" && c.String("bundle") == "" {
				return errors.New("give --bundle: where the registry reads its rootcertbundle (for example /etc/registry/token-ca.pem)")
			}
			format, jwksFile := c.String("format"), c.String("jwks")
			switch {
			case format != "yaml" && format != "env" && format != "jwks":
				return fmt.Errorf("--format %q: want yaml, env or jwks", format)
			case format == "jwks" && jwksFile == "":
				return errors.New("give --jwks with --format jwks: where the registry reads its auth.token.jwks (for example /etc/registry/token.jwks)")
			case format != "jwks" && jwksFile != "":
				return errors.New("--jwks goes with --format jwks")
			}
			cfg, dev, err := loadOrDevConfig(c)
			if err != nil {
				return err
			}
			services, err := cfg.LoadServices()
			if err != nil {
				return err
			}
			svc, err := pickService(services, c.String("service"))
			if err != nil {
				return err
			}
			bundle := c.String("bundle")
			if bundle == "" {
				bundle = filepath.Join(dev.stateDir, "registry-bundle.pem") // the one registry.yml names
			}
			if err := atomicfile.Write(bundle, svc.Keys.CertBundle(time.Now()), 0o644); err != nil {
				return err
			}
			section := registryAuthSection(svc, bundle)
			if format == "jwks" {
				if err := writeJWKS(jwksFile, svc); err != nil {
					return err
				}
				section += fmt.Sprintf("    jwks: %q\n", jwksFile)
			}
			if format == "env" {
				section = registryAuthEnv(svc, bundle)
			}
			fmt.Fprint(c.App.Writer, section)
			if warn := realmWarning(svc.Realm); warn != "" {
				fmt.Fprintln(c.App.ErrWriter, "warning:", warn)
			}
			fmt.Fprintf(c.App.ErrWriter, "wrote the certificate bundle (%d keys) to %s\n", len(svc.Keys.Published(time.Now())), bundle)
			return nil
		},
	}
}

// registryAuthEnv is registryAuthSection as distribution's environment
// overrides (REGISTRY_ + the upper-cased path), for containers configured
// by variables.
func registryAuthEnv(svc *broker.Service, bundle string) string {
	var b strings.Builder
	for _, kv := range [][2]string{{"REALM", svc.Realm}, {"SERVICE", svc.Name}, {"ISSUER", svc.Issuer}, {"ROOTCERTBUNDLE", bundle}} {
		fmt.Fprintf(&b, "REGISTRY_AUTH_TOKEN_%s=%s\n", kv[0], kv[1])
	}
	return b.String()
}

// writeJWKS writes the published keys of svc in the form distribution 3
// reads from auth.token.jwks: {"keys": [...]}, keyed by kid.
func writeJWKS(path string, svc *broker.Service) error {
	data, err := json.MarshalIndent(map[string]any{"keys": svc.Keys.JWKs(time.Now())}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o644)
}

func pickService(services []*broker.Service, name string) (*broker.Service, error) {
	for _, s := range services {
		if (name == "" && (s.Default || len(services) == 1)) || s.Name == name {
			return s, nil
		}
	}
	if name == "" {
		return nil, fmt.Errorf("several services and none is default: choose one with --service")
	}
	return nil, fmt.Errorf("no service named %q", name)
}

// realmWarning explains when current clients will refuse the realm (protocol.md §5).
func realmWarning(realm string) string {
	u, err := url.Parse(realm)
	if err != nil {
		return ""
	}
	ip := net.ParseIP(u.Hostname())
	if ip != nil && (ip.IsLoopback() || ip.IsPrivate()) {
		return fmt.Sprintf("realm host %s is a private or loopback IP literal: crane and oras refuse such realms unless the registry has the same host; use a host name (localhost in tests)", u.Hostname())
	}
	return ""
}
