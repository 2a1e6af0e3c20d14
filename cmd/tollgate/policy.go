package main

import (
	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/policies"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "test and evaluate Rego policies",
		Subcommands: []*cli.Command{
			policyTestCommand(),
			policyEvalCommand(),
			policyCheckCommand(),
			policyFmtCommand(),
			{
				Name:  "schema",
				Usage: "print the JSON schema of the policy input",
				Description: `The input document every policy sees, as a JSON schema (version 1).

Example:
   tollgate policy schema > input.schema.json`,
				Action: func(c *cli.Context) error {
					_, err := c.App.Writer.Write(policies.InputSchema())
					return err
				},
			},
		},
	}
}
