// Command tollgate is a token broker for container registries whose
// authorization is written in Rego.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/internal/credhelper"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if filepath.Base(os.Args[0]) == credhelper.HelperName {
		os.Exit(runCredentialHelper(os.Args[1:], os.Stdin, os.Stdout))
	}
	if err := runApp(newApp(), os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "tollgate:", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "tollgate",
		Usage: "token broker for container registries, with authorization written in Rego",
		Description: `tollgate answers a registry's token realm: it authenticates the caller
(htpasswd, LDAP, OIDC tokens, robot credentials, or anonymous), asks a Rego policy
which of the requested actions to grant, and signs exactly those into a JWT that
distribution 2.8 and 3.x accept.

Start with no configuration to get a development broker:
   tollgate serve`,
		Version:         version,
		HideHelpCommand: true,
		// Scopes hold commas (repository:team/app:pull,push): never split flags on them.
		DisableSliceFlagSeparator: true,
		Commands: []*cli.Command{
			serveCommand(),
			keygenCommand(),
			htpasswdCommand(),
			registryConfigCommand(),
			policyCommand(),
			bundleCommand(),
			robotCommand(),
			tokenCommand(),
			sessionCommand(),
			doctorCommand(),
			loginCommand(),
			logoutCommand(),
			installCredentialHelperCommand(),
			{
				Name:  "version",
				Usage: "print the version and build information",
				Description: `Example:
   tollgate version`,
				Action: func(c *cli.Context) error {
					fmt.Fprintf(c.App.Writer, "tollgate %s\n", version)
					if bi, ok := debug.ReadBuildInfo(); ok {
						fmt.Fprintf(c.App.Writer, "go %s\n", strings.TrimPrefix(bi.GoVersion, "go"))
						for _, d := range bi.Deps {
							if strings.Contains(d.Path, "open-policy-agent/opa") {
								fmt.Fprintf(c.App.Writer, "opa %s\n", d.Version)
							}
						}
					}
					return nil
				},
			},
		},
	}
}

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "create a signing key and its self-signed certificate",
		ArgsUsage: " ",
		Description: `Writes DIR/NAME.key (PKCS#8, mode 0600) and DIR/NAME.crt. The certificate's
not-before is the moment the key starts signing: the key with the most recent
not-before that has passed signs, every unexpired key is published. To rotate,
create a key with a future --not-before, give registries the new bundle
(tollgate registry-config --bundle), and remove the old key once the tokens it
signed have expired.

Examples:
   tollgate keygen --out /etc/tollgate/keys/registry
   tollgate keygen --out keys --type rsa --not-before 2026-12-01T00:00:00Z`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "key directory", Required: true},
			&cli.StringFlag{Name: "type", Value: "ec", Usage: "ec (ECDSA P-256, ES256) or rsa (RSA-2048, RS256)"},
			&cli.StringFlag{Name: "name", Usage: "file name without extension (default: key-<UTC time>)"},
			&cli.StringFlag{Name: "not-before", Value: "now", Usage: "when the key starts signing: now, an RFC 3339 time, or a duration from now such as 24h"},
			&cli.DurationFlag{Name: "validity", Value: 5 * 365 * 24 * time.Hour, Usage: "how long the certificate is valid"},
			&cli.StringFlag{Name: "common-name", Value: "tollgate token signer", Usage: "certificate subject common name"},
		},
		Action: func(c *cli.Context) error {
			notBefore, err := parseWhen(c.String("not-before"), time.Now())
			if err != nil {
				return fmt.Errorf("--not-before: %w", err)
			}
			name := c.String("name")
			if name == "" {
				name = "key-" + notBefore.UTC().Format("20060102T150405Z")
			}
			if strings.ContainsAny(name, `/\`) {
				return fmt.Errorf("--name %q: must not contain a path separator", name)
			}
			keyPEM, certPEM, err := broker.GenerateKey(broker.KeyType(c.String("type")), c.String("common-name"), notBefore, c.Duration("validity"))
			if err != nil {
				return err
			}
			if err := broker.WriteKeyPair(c.String("out"), name, keyPEM, certPEM); err != nil {
				return err
			}
			k, err := broker.ParseKeyPair(keyPEM, certPEM)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s.key and %s.crt\nalgorithm %s, kid %s, signs from %s\n",
				filepath.Join(c.String("out"), name), filepath.Join(c.String("out"), name), k.Algorithm(), k.ID, k.Cert.NotBefore.UTC().Format(time.RFC3339))
			return nil
		},
	}
}

// parseWhen reads "now", an RFC 3339 time, or a duration from now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" || s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not now, an RFC 3339 time or a duration", s)
}

func htpasswdCommand() *cli.Command {
	cost := &cli.IntFlag{Name: "cost", Value: 10, Usage: "bcrypt cost (4-31)"}
	return &cli.Command{
		Name:  "htpasswd",
		Usage: "add, remove or verify users in an htpasswd file (bcrypt)",
		Description: `Passwords are read from standard input (one line), never from the command
line, so they stay out of shell history and process lists. A running broker
picks up changes to the file within a second.

Examples:
   printf '%s\n' "$PASSWORD" | tollgate htpasswd add users.htpasswd alice
   printf '%s\n' "$PASSWORD" | tollgate htpasswd verify users.htpasswd alice
   tollgate htpasswd remove users.htpasswd alice`,
		Subcommands: []*cli.Command{
			{
				Name: "add", Usage: "add a user or change their password", ArgsUsage: "FILE USER",
				Flags: []cli.Flag{cost},
				Action: func(c *cli.Context) error {
					file, user, err := fileAndUser(c)
					if err != nil {
						return err
					}
					pw, err := readPassword(c.App.Reader)
					if err != nil {
						return err
					}
					if err := htpasswd.Set(file, user, pw, c.Int("cost")); err != nil {
						return err
					}
					fmt.Fprintf(c.App.ErrWriter, "set password of %s in %s\n", user, file)
					return nil
				},
			},
			{
				Name: "remove", Usage: "remove a user", ArgsUsage: "FILE USER",
				Action: func(c *cli.Context) error {
					file, user, err := fileAndUser(c)
					if err != nil {
						return err
					}
					return htpasswd.Remove(file, user)
				},
			},
			{
				Name: "verify", Usage: "check a password; exit status 0 when it matches, 1 when not", ArgsUsage: "FILE USER",
				Action: func(c *cli.Context) error {
					file, user, err := fileAndUser(c)
					if err != nil {
						return err
					}
					pw, err := readPassword(c.App.Reader)
					if err != nil {
						return err
					}
					ok, err := htpasswd.Verify(file, user, pw)
					if err != nil {
						return err
					}
					if !ok {
						return cli.Exit("password does not match", 1)
					}
					fmt.Fprintln(c.App.ErrWriter, "password matches")
					return nil
				},
			},
		},
	}
}

func fileAndUser(c *cli.Context) (string, string, error) {
	if c.NArg() != 2 {
		return "", "", fmt.Errorf("want FILE USER, got %d arguments", c.NArg())
	}
	return c.Args().Get(0), c.Args().Get(1), nil
}

func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on standard input")
	}
	return pw, nil
}
