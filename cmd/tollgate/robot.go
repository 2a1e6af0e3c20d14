package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/identity/robot"
)

func robotCommand() *cli.Command {
	fileFlag := &cli.StringFlag{Name: "file", Aliases: []string{"f"}, Value: ".tollgate/robots.json", EnvVars: []string{"TOLLGATE_ROBOTS"},
		Usage: "the robot store (the `file` of the broker's robot connector); the broker reloads it on change"}
	return &cli.Command{
		Name:  "robot",
		Usage: "manage robot credentials for CI: scoped, expiring, rotatable, revocable",
		Description: `Robots are identities with connector "robot" whose declared scopes are the
most the default policy grants them. Their user name is robot-NAME; their secret
is shown once and stored only as a hash. The broker picks up every change
without a restart.`,
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a robot and print its credential once",
				ArgsUsage: "NAME",
				Description: `NAME may hold letters, digits, '.', '_' and '-' (safe in shells and CI
variables). Scopes are type:name:actions; names may use globs (* within a path
segment, ** across segments).

Example:
   tollgate robot create release-ci --scope 'repository:team/*:pull,push' --expires 90d --description "release CI"`,
				Flags: []cli.Flag{
					fileFlag,
					&cli.StringSliceFlag{Name: "scope", Aliases: []string{"s"}, Required: true, Usage: "a scope the robot may be granted (repeat)"},
					&cli.StringFlag{Name: "expires", Required: true, Usage: "lifetime: 90d, 12h, 30m, or never"},
					&cli.StringFlag{Name: "service", Usage: "the only service the robot may get tokens for (default: any)"},
					&cli.StringFlag{Name: "description", Usage: "free text, shown in robot list and as the identity's name"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("give the robot's NAME")
					}
					ttl, err := parseLifetime(c.String("expires"))
					if err != nil {
						return err
					}
					r, secret, err := robot.Create(c.String("file"), robot.CreateOptions{
						Name: c.Args().First(), Scopes: c.StringSlice("scope"), TTL: ttl,
						Service: c.String("service"), Description: c.String("description"), Now: time.Now(),
					})
					if err != nil {
						return err
					}
					printCredential(c, r, secret)
					return nil
				},
			},
			{
				Name:      "list",
				Usage:     "list robots: scopes, dates and status",
				ArgsUsage: "[NAME...]",
				Description: `Lists every robot of the store, or only the NAMEs given.

Examples:
   tollgate robot list --file /etc/tollgate/robots.json
   tollgate robot list team-ci --file /etc/tollgate/robots.json`,
				Flags: []cli.Flag{fileFlag},
				Action: func(c *cli.Context) error {
					robots, err := robot.List(c.String("file"))
					if err != nil {
						return err
					}
					if robots, err = onlyNamed(robots, c.Args().Slice()); err != nil {
						return err
					}
					now := time.Now()
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "USER\tSTATUS\tSCOPES\tSERVICE\tCREATED\tROTATED\tEXPIRES\tDESCRIPTION")
					for _, r := range robots {
						expires := "never"
						if r.Expires != nil {
							expires = r.Expires.Format(time.RFC3339)
						}
						service := r.Service
						if service == "" {
							service = "*"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.User(), r.Status(now), strings.Join(r.Scopes, " "), service,
							r.Created.Format(time.RFC3339), r.Rotated.Format(time.RFC3339), expires, r.Description)
					}
					return tw.Flush()
				},
			},
			{
				Name:      "rotate",
				Usage:     "give a robot a new secret (the old one stops working)",
				ArgsUsage: "NAME",
				Description: `The expiry does not change unless --expires is given; then it restarts from
now. Nothing restarts by accident.

Examples:
   tollgate robot rotate team-ci
   tollgate robot rotate team-ci --expires 90d`,
				Flags: []cli.Flag{
					fileFlag,
					&cli.StringFlag{Name: "expires", Usage: "new lifetime from now: 90d, 12h, or never (default: keep the expiry)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("give the robot's NAME")
					}
					var ttl *time.Duration
					if c.IsSet("expires") {
						d, err := parseLifetime(c.String("expires"))
						if err != nil {
							return err
						}
						ttl = &d
					}
					r, secret, err := robot.Rotate(c.String("file"), c.Args().First(), ttl, time.Now())
					if err != nil {
						return err
					}
					printCredential(c, r, secret)
					return nil
				},
			},
			{
				Name:      "revoke",
				Usage:     "stop a robot for good (its record stays for the audit trail)",
				ArgsUsage: "NAME",
				Description: `Example:
   tollgate robot revoke team-ci`,
				Flags: []cli.Flag{fileFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("give the robot's NAME")
					}
					if err := robot.Revoke(c.String("file"), c.Args().First(), time.Now()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "revoked %s%s\n", robot.UserPrefix, strings.TrimPrefix(c.Args().First(), robot.UserPrefix))
					return nil
				},
			},
		},
	}
}

// onlyNamed keeps the robots named (NAME or robot-NAME); none named keeps all.
func onlyNamed(robots []robot.Record, names []string) ([]robot.Record, error) {
	if len(names) == 0 {
		return robots, nil
	}
	var out []robot.Record
	for _, name := range names {
		i := slices.IndexFunc(robots, func(r robot.Record) bool { return r.Name == strings.TrimPrefix(name, robot.UserPrefix) })
		if i < 0 {
			return nil, fmt.Errorf("no robot named %q in this store", name)
		}
		out = append(out, robots[i])
	}
	return out, nil
}

// printCredential shows a robot's credential, the only time it is shown.
func printCredential(c *cli.Context, r robot.Record, secret string) {
	expires := "never"
	if r.Expires != nil {
		expires = r.Expires.Format(time.RFC3339)
	}
	fmt.Fprintf(c.App.Writer, "user:    %s\nsecret:  %s\nexpires: %s\n", r.User(), secret, expires)
	fmt.Fprintln(c.App.ErrWriter, "The secret is shown only now; store it in your CI's secret store.")
}

// parseLifetime reads 90d, 12h, 30m, a Go duration, or "never" (0).
func parseLifetime(s string) (time.Duration, error) {
	if s == "never" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 3650 {
			return 0, fmt.Errorf("--expires %q: want 1d to 3650d, hours (12h), or never", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--expires %q: want 90d, 12h, 30m or never", s)
	}
	return d, nil
}
