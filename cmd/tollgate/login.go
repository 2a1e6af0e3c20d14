package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/internal/credhelper"
	"github.com/tollgate/tollgate/internal/devicelogin"
)

// runCredentialHelper answers as docker-credential-tollgate: the clients
// run the helper by that name (a link to this binary).
func runCredentialHelper(args []string, stdin io.Reader, stdout io.Writer) int {
	s, err := credhelper.DefaultStore()
	if err != nil {
		fmt.Fprintln(stdout, err)
		return 1
	}
	return credhelper.Serve(s, args, stdin, stdout)
}

func loginOptions(c *cli.Context) (devicelogin.Options, error) {
	if c.NArg() != 1 {
		return devicelogin.Options{}, fmt.Errorf("want REGISTRY, got %d arguments", c.NArg())
	}
	s, err := credhelper.DefaultStore()
	if err != nil {
		return devicelogin.Options{}, err
	}
	cfg, err := credhelper.DockerConfigPath()
	if err != nil {
		return devicelogin.Options{}, err
	}
	return devicelogin.Options{
		Registry: c.Args().First(), Connector: c.String("connector"), Insecure: c.Bool("insecure"),
		Store: s, DockerConfig: cfg,
	}, nil
}

var insecureFlag = &cli.BoolFlag{Name: "insecure", Usage: "allow plain http to the registry and the realm (always allowed on the loopback)"}

func loginCommand() *cli.Command {
	return &cli.Command{
		Name:      "login",
		Usage:     "log in to a registry through the identity provider (device code), no password",
		ArgsUsage: "REGISTRY",
		Description: `Finds the registry's tollgate broker from its token challenge, shows a code
to approve at the identity provider (in a browser, on any device), stores the
session's refresh token in the tollgate credential helper's store
($XDG_CONFIG_HOME/tollgate, mode 0600) and sets credHelpers[REGISTRY] to
"tollgate" in the docker config ($DOCKER_CONFIG/config.json or
~/.docker/config.json). docker, podman, skopeo, crane and oras then run
docker-credential-tollgate (see install-credential-helper).

Examples:
   tollgate login registry.example.com
   tollgate login registry.example.com --connector corp`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "connector", Usage: "the broker's OIDC connector (needed when it has several with device login)"},
			insecureFlag,
		},
		Action: func(c *cli.Context) error {
			opts, err := loginOptions(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			client := &devicelogin.Client{HTTP: devicelogin.NewHTTPClient()}
			s, err := client.Login(ctx, opts, c.App.ErrWriter)
			if errors.Is(err, context.Canceled) {
				return cli.Exit("login cancelled", 130)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "Logged in as %s (session %s)\n", s.Subject, s.SessionID)
			fmt.Fprintln(c.App.Writer, "Login Succeeded")
			return nil
		},
	}
}

func logoutCommand() *cli.Command {
	return &cli.Command{
		Name:      "logout",
		Usage:     "end a registry login's session at the broker and erase its credential",
		ArgsUsage: "REGISTRY",
		Description: `Ends the session at the broker (if the broker cannot be reached, says so and
erases the credential anyway), erases the credential from the helper's store
and removes credHelpers[REGISTRY] from the docker config.

Example:
   tollgate logout registry.example.com`,
		Flags: []cli.Flag{insecureFlag},
		Action: func(c *cli.Context) error {
			opts, err := loginOptions(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			client := &devicelogin.Client{HTTP: devicelogin.NewHTTPClient()}
			found, err := client.Logout(ctx, opts, c.App.ErrWriter)
			if err != nil {
				return err
			}
			if !found {
				fmt.Fprintf(c.App.ErrWriter, "Not logged in to %s\n", opts.Registry)
				return nil
			}
			fmt.Fprintf(c.App.Writer, "Removing login credentials for %s\n", opts.Registry)
			return nil
		},
	}
}

func installCredentialHelperCommand() *cli.Command {
	return &cli.Command{
		Name:      "install-credential-helper",
		Usage:     "link docker-credential-tollgate to this binary so registry clients find the helper",
		ArgsUsage: "[DIR]",
		Description: `Creates DIR/docker-credential-tollgate, a symbolic link to this tollgate
binary (DIR defaults to the binary's own directory). DIR must be on the PATH
of docker, podman, skopeo, crane and oras. Equivalent to
   ln -s "$(command -v tollgate)" DIR/docker-credential-tollgate

Example:
   tollgate install-credential-helper ~/.local/bin`,
		Action: func(c *cli.Context) error {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find this binary: %w", err)
			}
			if self, err = filepath.EvalSymlinks(self); err != nil {
				return fmt.Errorf("find this binary: %w", err)
			}
			dir := filepath.Dir(self)
			if c.NArg() > 0 {
				dir = c.Args().First()
			}
			link := filepath.Join(dir, credhelper.HelperName)
			if target, err := os.Readlink(link); err == nil && target == self {
				fmt.Fprintf(c.App.ErrWriter, "%s already links to %s\n", link, self)
				return nil
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := os.Symlink(self, link); err != nil {
				return fmt.Errorf("link the credential helper: %w", err)
			}
			fmt.Fprintf(c.App.ErrWriter, "linked %s -> %s\n", link, self)
			return nil
		},
	}
}
