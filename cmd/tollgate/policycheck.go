package main

import (
	"errors"
	"fmt"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
	"github.com/urfave/cli/v2"
)

func policyCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "compile a policy strictly and type-check it against the input schema",
		ArgsUsage: "DIR",
		Description: `Loads the bundle directory as the broker would and reports every problem:
parse and compile errors, strict-mode findings (unused variables, imports and
arguments), uses of input that do not exist in the input schema or compare it
with the wrong type (input.identity.subjct, input.identity.anonymous == "no"),
and rules of the wrong shape (allowed must be a set, token_ttl one number,
reasons a set). Exit status 1 when anything is found.

Example:
   tollgate policy check policies/default`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "query", Value: policies.DefaultQuery, Usage: "package of the rules"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("give one bundle directory")
			}
			b, err := bundles.LoadDir(c.Args().First())
			if err != nil {
				return err
			}
			errs := policies.Check(b, c.String("query"))
			for _, e := range errs {
				fmt.Fprintln(c.App.Writer, e)
			}
			if len(errs) > 0 {
				return cli.Exit(fmt.Sprintf("%d problems", len(errs)), 1)
			}
			fmt.Fprintf(c.App.Writer, "%s: ok (revision %s)\n", c.Args().First(), b.Revision)
			if why := policies.Uncacheable(b); why != "" {
				fmt.Fprintf(c.App.Writer, "note: decisions of this policy are never cached: %s\n", why)
			}
			return nil
		},
	}
}
