package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
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
and rules of the wrong shape or type (allowed a set of {type, name, action}
objects, token_ttl one number, reasons a set of strings: the decision schema,
policies/schema/decision.json). Problems name files as policy test does
(DIR/authz.rego:12). Exit status 1 when anything is found.

Example:
   tollgate policy check policies/default`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "query", Value: policies.DefaultQuery, Usage: "package of the rules"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("give one bundle directory")
			}
			dir := c.Args().First()
			b, err := bundles.LoadDir(dir)
			if err != nil {
				return err
			}
			errs := policies.Check(b, c.String("query"))
			for _, e := range errs {
				fmt.Fprintln(c.App.Writer, inDir(dir, e))
			}
			switch len(errs) {
			case 0:
			case 1:
				return cli.Exit("1 problem", 1)
			default:
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

// inDir names the file of a problem by its path from the working directory,
// as policy test and opa do, not by its path inside the bundle
// (/authz.rego).
func inDir(dir string, err error) error {
	var e *ast.Error
	if !errors.As(err, &e) || e.Location == nil {
		return err
	}
	moved := *e
	loc := *e.Location
	loc.File = filepath.Join(dir, loc.File)
	moved.Location = &loc
	return &moved
}
