package main

import (
	"bytes"
	"errors"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/atomicfile"
)

func bundleCommand() *cli.Command {
	return &cli.Command{
		Name:  "bundle",
		Usage: "build and sign OPA policy bundles",
		Subcommands: []*cli.Command{
			{
				Name:      "build",
				Usage:     "build a bundle tarball from a policy directory (as opa build --bundle)",
				ArgsUsage: "DIR",
				Description: `Loads DIR as an OPA bundle (.manifest, *.rego, data.json/data.yaml, tests),
compiles it to check it, and writes a gzipped bundle that tollgate and opa both
load. With --signing-key the bundle carries a .signatures.json that brokers with
policy.signing configured verify. Paths inside the bundle are relative to DIR.

Examples:
   tollgate bundle build -o bundle.tar.gz --revision "$(git rev-parse HEAD)" policies/default
   tollgate bundle build -o bundle.tar.gz --signing-key key.pem --signing-alg ES256 policies/default`,
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "bundle.tar.gz", Usage: "where to write the bundle"},
					&cli.StringFlag{Name: "revision", Aliases: []string{"r"}, Usage: "the bundle's revision (default: the manifest's)"},
				}, signingFlags(false)...),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("give one policy directory")
					}
					var buf bytes.Buffer
					if err := bundles.Build(c.Context, c.Args().First(), c.String("revision"), signingFrom(c), &buf); err != nil {
						return err
					}
					return atomicfile.Write(c.String("output"), buf.Bytes(), 0o644)
				},
			},
			{
				Name:      "sign",
				Usage:     "sign a bundle tarball (replaces its .signatures.json)",
				ArgsUsage: "BUNDLE",
				Description: `Adds a signature to a bundle built by tollgate or by opa build, as
opa build --signing-key would have written it. Without --output the bundle is
replaced in place.

Example:
   tollgate bundle sign --signing-key key.pem --signing-alg ES256 bundle.tar.gz`,
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "where to write the signed bundle (default: in place)"},
				}, signingFlags(true)...),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("give one bundle file")
					}
					in := c.Args().First()
					f, err := os.Open(in)
					if err != nil {
						return err
					}
					defer f.Close()
					var buf bytes.Buffer
					if err := bundles.Sign(f, signingFrom(c), &buf); err != nil {
						return err
					}
					out := c.String("output")
					if out == "" {
						out = in
					}
					return atomicfile.Write(out, buf.Bytes(), 0o644)
				},
			},
		},
	}
}

func signingFlags(required bool) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "signing-key", Required: required, Usage: "private key (PEM file) to sign with"},
		&cli.StringFlag{Name: "signing-alg", Value: "RS256", Usage: "signature algorithm: RS256, RS384, RS512, PS256, ES256, ES384, ES512 (opa's default is RS256)"},
		&cli.StringFlag{Name: "signing-key-id", Value: bundles.DefaultKeyID, Usage: "key id named in the signature; the verifier's policy.signing.key_id"},
		&cli.StringFlag{Name: "claims-file", Usage: "JSON file of extra claims for the signature (for example a scope)"},
	}
}

func signingFrom(c *cli.Context) *bundles.Signing {
	if c.String("signing-key") == "" {
		return nil
	}
	return &bundles.Signing{Key: c.String("signing-key"), Algorithm: c.String("signing-alg"),
		KeyID: c.String("signing-key-id"), ClaimsFile: c.String("claims-file")}
}
