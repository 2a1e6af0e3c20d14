package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// runApp runs the CLI on args as people type them: urfave/cli v2 stops
// reading a command's flags at its first positional argument (v3 does not),
// so `robot create team-ci --scope ...` would leave --scope unread. Flags are
// moved before the arguments first, for every command, in this one place.
func runApp(app *cli.App, args []string) error {
	return app.Run(flagsFirst(app, args))
}

// flagsFirst returns args with the flags of the command being run moved
// before its positional arguments. The program name, the global flags and
// the command path (`robot create`) keep their places; a flag that takes a
// value keeps its value; after `--` everything is an argument. A word that is
// not a known subcommand ends the walk with the command reached so far.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	flags, subs := append(slices.Clone(app.Flags), cli.VersionFlag), app.Commands
	rest := args[1:]
	for len(subs) > 0 {
		// A parent's own flags come before the subcommand's name.
		i := 0
		for i < len(rest) && isFlag(rest[i]) {
			i += flagWidth(flags, rest, i)
		}
		if i >= len(rest) {
			return append(out, rest...)
		}
		cmd := findCommand(subs, rest[i])
		if cmd == nil {
			return append(out, rest...) // help, a typo: urfave/cli answers it
		}
		out = append(out, rest[:i+1]...)
		rest = rest[i+1:]
		flags, subs = cmd.Flags, cmd.Subcommands
	}
	return append(out, reorder(flags, rest)...)
}

// reorder puts a leaf command's flags (with their values) before its
// positional arguments, separated by "--" so an argument is never read as a
// flag.
func reorder(flags []cli.Flag, rest []string) []string {
	var opts, positional []string
	for i := 0; i < len(rest); {
		switch {
		case rest[i] == "--":
			positional = append(positional, rest[i+1:]...)
			i = len(rest)
		case isFlag(rest[i]):
			n := flagWidth(flags, rest, i)
			opts = append(opts, rest[i:i+n]...)
			i += n
		default:
			positional = append(positional, rest[i])
			i++
		}
	}
	if len(positional) == 0 {
		return opts
	}
	return append(append(opts, "--"), positional...)
}

// isFlag: "-x", "--name", "--name=value"; "-" alone is an argument (stdin).
func isFlag(s string) bool { return len(s) > 1 && s[0] == '-' && s != "--" }

// flagWidth is how many words the flag at rest[i] spans: 2 when it takes a
// value given as the next word, else 1. An unknown flag spans 1 word, so the
// parser still sees it and names it in its error.
func flagWidth(flags []cli.Flag, rest []string, i int) int {
	name, _, hasValue := strings.Cut(strings.TrimLeft(rest[i], "-"), "=")
	if hasValue || i+1 >= len(rest) {
		return 1
	}
	for _, f := range slices.Concat(flags, []cli.Flag{cli.HelpFlag}) {
		if slices.Contains(f.Names(), name) {
			if df, ok := f.(cli.DocGenerationFlag); ok && df.TakesValue() {
				return 2
			}
			return 1
		}
	}
	return 1
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
