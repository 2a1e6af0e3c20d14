package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/serve"
)

func sessionCommand() *cli.Command {
	flags := func(more ...cli.Flag) []cli.Flag {
		return append([]cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "broker configuration file (default: the development state in --state-dir)", EnvVars: []string{"TOLLGATE_CONFIG"}},
			&cli.StringFlag{Name: "state-dir", Value: ".tollgate", Usage: "development mode state directory"},
		}, more...)
	}
	return &cli.Command{
		Name:  "session",
		Usage: "list and revoke device-login sessions",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list login sessions (never their tokens)",
				Description: `Lists the sessions of device login from the broker's Redis when one is
configured, else from sessions.json in its state_dir.

Examples:
   tollgate session list --config /etc/tollgate/config.yaml
   tollgate session list --config /etc/tollgate/config.yaml --user dana`,
				Flags:  flags(&cli.StringFlag{Name: "user", Usage: "only this subject's sessions"}),
				Action: sessionList,
			},
			{
				Name:      "revoke",
				Usage:     "end a login session, or every session of a user, on every replica",
				ArgsUsage: "[SESSION-ID]",
				Description: `Ends one session (by id) or all of a user's (--user). Its refresh tokens
are refused at their next use, on every replica: the session store is read
at each refresh. Access tokens already issued live out their few minutes.

Examples:
   tollgate session revoke --config /etc/tollgate/config.yaml 7KQ2ZJ7M5VQ4XH3RUT6WNDAE2C
   tollgate session revoke --config /etc/tollgate/config.yaml --user dana`,
				Flags:  flags(&cli.StringFlag{Name: "user", Usage: "revoke every session of this subject"}),
				Action: sessionRevoke,
			},
		},
	}
}

// openSessions opens the store the broker of the configuration uses.
func openSessions(c *cli.Context) (broker.SessionStore, func(), error) {
	cfg, _, err := loadOrDevConfig(c)
	if err != nil {
		return nil, nil, err
	}
	return sessionStoreOf(cfg)
}

func sessionStoreOf(cfg *config.Config) (broker.SessionStore, func(), error) {
	if cfg.Redis == nil {
		return broker.NewFileSessions(cfg.SessionsFile()), func() {}, nil
	}
	rs, err := serve.OpenRedis(cfg, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	return rs.Sessions(), func() { rs.Close() }, nil
}

func sessionList(c *cli.Context) error {
	store, done, err := openSessions(c)
	if err != nil {
		return err
	}
	defer done()
	all, err := store.List(c.Context)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSER\tCONNECTOR\tSERVICE\tCREATED\tLAST USED\tLAST VALIDATED\tGROUPS")
	for _, s := range all {
		if u := c.String("user"); u != "" && s.Subject != u {
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Subject, s.Connector, s.Service,
			stamp(s.Created), stamp(s.LastUsed), stamp(s.LastValidated), strings.Join(s.Groups, ","))
	}
	return w.Flush()
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func sessionRevoke(c *cli.Context) error {
	id, user := c.Args().First(), c.String("user")
	if (id == "") == (user == "") || c.NArg() > 1 {
		return errors.New("give one session id, or --user")
	}
	store, done, err := openSessions(c)
	if err != nil {
		return err
	}
	defer done()
	if user != "" {
		n, err := broker.RevokeUser(c.Context, store, user)
		if err != nil {
			return fmt.Errorf("revoke sessions of %s: %w", user, err)
		}
		fmt.Fprintf(c.App.Writer, "revoked %d session(s) of %s\n", n, user)
		return nil
	}
	s, err := store.Get(c.Context, id)
	if err != nil {
		return fmt.Errorf("revoke session %s: %w", id, err)
	}
	if s == nil {
		// Revoking is idempotent, as logout is: the session is gone.
		fmt.Fprintf(c.App.Writer, "no session %s: nothing to revoke (ended, expired, or a wrong id)\n", id)
		return nil
	}
	if err := store.Delete(c.Context, id); err != nil {
		return fmt.Errorf("revoke session %s: %w", id, err)
	}
	fmt.Fprintf(c.App.Writer, "revoked session %s of %s\n", id, s.Subject)
	return nil
}
