package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
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

The realm is the token URL CLIENTS reach. Current clients refuse realms on
private or loopback addresses unless the realm's host is the registry's own host
name: serve the realm on a public name, or on the registry's host under a path
(https://registry.example.com/token through the same ingress).

Examples:
   tollgate registry-config --config config.yaml --bundle /etc/registry/token-ca.pem
   tollgate registry-config --config config.yaml --service notary.example.com --bundle notary-ca.pem`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "broker configuration file (default: the development state in --state-dir)", EnvVars: []string{"TOLLGATE_CONFIG"}},
			&cli.StringFlag{Name: "state-dir", Value: ".tollgate", Usage: "development mode state directory"},
			&cli.StringFlag{Name: "service", Usage: "service name (default: the default service)"},
			&cli.StringFlag{Name: "bundle", Usage: "where to write the certificate bundle, the registry's rootcertbundle (required with --config; development: the state directory's registry-bundle.pem)"},
		},
		Action: func(c *cli.Context) error {
			// Only the operator knows where the registry reads its bundle;
			// a default would drop it into whatever directory this runs in.
			if c.String("config") != "" && c.String("bundle") == "" {
				return errors.New("give --bundle: where the registry reads its rootcertbundle (for example /etc/registry/token-ca.pem)")
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
			fmt.Fprint(c.App.Writer, registryAuthSection(svc, bundle))
			if warn := realmWarning(svc.Realm); warn != "" {
				fmt.Fprintln(c.App.ErrWriter, "warning:", warn)
			}
			fmt.Fprintf(c.App.ErrWriter, "wrote the certificate bundle (%d keys) to %s\n", len(svc.Keys.Published(time.Now())), bundle)
			return nil
		},
	}
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
