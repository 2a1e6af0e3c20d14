package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/urfave/cli/v2"
)

// exitFmt is opa fmt's exit status for a file that does not format (or,
// with --fail, would change); other errors exit 1, as opa fmt's do.
const exitFmt = 2

func policyFmtCommand() *cli.Command {
	return &cli.Command{
		Name:      "fmt",
		Usage:     "format Rego files with OPA's formatter, as opa fmt does",
		ArgsUsage: "[PATH...]",
		Description: `Formats the .rego files under the given paths (standard input to standard
output when none is given) with OPA's own formatter, so the result is exactly
opa fmt's. Without -w, -l or -d the formatted files are printed.

Exit status, as opa fmt's: 0 when done; 2 when a file does not parse (or
the formatted result would not), or with --fail when a file would change;
1 on any other error (a path that does not exist). --fail without -l or -d
only checks, as opa's: a file that would change is neither printed nor
rewritten (-w included). Unlike opa fmt, -d prints a unified diff (opa prints
a character diff meant for a terminal), and the formatted result is always
checked to parse (opa's --check-result, which cannot be turned off here).

Examples:
   tollgate policy fmt -w policies/mine
   tollgate policy fmt -l --fail policies/mine     # CI: list the files to reformat
   tollgate policy fmt -d policies/mine`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "write", Aliases: []string{"w"}, Usage: "overwrite the files that change"},
			&cli.BoolFlag{Name: "list", Aliases: []string{"l"}, Usage: "list the files that would change, and print nothing else"},
			&cli.BoolFlag{Name: "diff", Aliases: []string{"d"}, Usage: "print a unified diff of the changes"},
			&cli.BoolFlag{Name: "fail", Usage: "exit 2 when a file would change (alone or with -w: print and write nothing)"},
			&cli.BoolFlag{Name: "v0-compatible", Usage: "read and write Rego v0 (as opa fmt --v0-compatible)"},
			&cli.BoolFlag{Name: "v0-v1", Usage: "format Rego v0 to be compatible with v0 and v1 (as opa fmt --v0-v1)"},
			&cli.BoolFlag{Name: "drop-v0-imports", Usage: "drop rego.v1 and future.keywords imports that v1 does not need"},
		},
		Action: func(c *cli.Context) error {
			o := fmtOptions{write: c.Bool("write"), list: c.Bool("list"), diff: c.Bool("diff"), fail: c.Bool("fail"),
				dropV0Imports: c.Bool("drop-v0-imports"), regoVersion: ast.RegoV1, parseVersion: ast.RegoV1}
			switch {
			case c.Bool("v0-v1"): // a v0 module, formatted to be read by both
				o.regoVersion, o.parseVersion = ast.RegoV0CompatV1, ast.RegoV0
			case c.Bool("v0-compatible"):
				o.regoVersion, o.parseVersion = ast.RegoV0, ast.RegoV0
			}
			if c.NArg() == 0 {
				return o.formatStdin(c.App.Reader, c.App.Writer)
			}
			for _, path := range c.Args().Slice() {
				err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
					if err != nil || d.IsDir() || filepath.Ext(p) != ".rego" {
						return err
					}
					return o.formatFile(c.App.Writer, p)
				})
				if fe := (fmtError{}); errors.As(err, &fe) {
					return cli.Exit(fe.Error(), exitFmt)
				}
				if err != nil {
					return cli.Exit(err.Error(), 1)
				}
			}
			return nil
		},
	}
}

type fmtOptions struct {
	write, list, diff, fail, dropV0Imports bool
	// regoVersion is the version written, parseVersion the one read.
	regoVersion, parseVersion ast.RegoVersion
}

// fmtError is a file that does not format or, with --fail, would change.
type fmtError struct{ msg string }

func (e fmtError) Error() string { return e.msg }

func (o fmtOptions) format(name string, src []byte) ([]byte, error) {
	opts := format.Opts{
		RegoVersion:                   o.regoVersion,
		DropRedundantDirectiveImports: o.dropV0Imports,
		ParserOptions:                 &ast.ParserOptions{RegoVersion: o.parseVersion},
	}
	out, err := format.SourceWithOpts(name, src, opts)
	if err != nil {
		return nil, fmtError{fmt.Sprintf("%s: %v", name, err)}
	}
	// As opa fmt --check-result: the formatter must not break the module.
	if _, err := ast.ParseModuleWithOpts(name, string(out), ast.ParserOptions{RegoVersion: o.regoVersion}); err != nil {
		return nil, fmtError{fmt.Sprintf("%s was formatted, but the result does not parse: %v", name, err)}
	}
	return out, nil
}

func (o fmtOptions) formatStdin(r io.Reader, w io.Writer) error {
	src, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	out, err := o.format("stdin", src)
	if err != nil {
		return cli.Exit(err.Error(), exitFmt)
	}
	_, err = w.Write(out)
	return err
}

// formatFile does what the flags ask with one file, as opa fmt does: -l
// wins over -d, which wins over -w.
func (o fmtOptions) formatFile(w io.Writer, path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := o.format(path, src)
	if err != nil {
		return err
	}
	changed := !bytes.Equal(src, out)
	notFormatted := fmtError{fmt.Sprintf("%s is not formatted (tollgate policy fmt -w %s)", path, path)}
	switch {
	case changed && o.fail && !o.list && !o.diff:
		// As opa fmt --fail: a check, so the file is neither printed nor
		// rewritten (-w included).
		return notFormatted
	case o.list:
		if changed {
			fmt.Fprintln(w, path)
		}
	case o.diff:
		if changed {
			fmt.Fprint(w, unifiedDiff(path, src, out))
		}
	case o.write:
		if changed {
			// In place, keeping the file's mode and owner, as opa fmt -w.
			if err := os.WriteFile(path, out, 0); err != nil {
				return err
			}
		}
	default:
		if _, err := w.Write(out); err != nil {
			return err
		}
	}
	if changed && o.fail {
		return notFormatted
	}
	return nil
}

// unifiedDiff is `diff -u` of a and b, three lines of context.
func unifiedDiff(name string, a, b []byte) string {
	edits := lineEdits(splitLines(a), splitLines(b))
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s (formatted)\n", name, name)
	const context = 3
	for i := 0; i < len(edits); {
		if edits[i].op == ' ' {
			i++
			continue
		}
		// A hunk: from context lines before this change to context
		// lines after the last change that is at most 2*context away.
		start, end := max(i-context, 0), i
		for j := i; j < len(edits) && j <= end+2*context; j++ {
			if edits[j].op != ' ' {
				end = j
			}
		}
		end = min(end+context+1, len(edits))
		var na, nb int
		for _, e := range edits[start:end] {
			na += btoi(e.op != '+')
			nb += btoi(e.op != '-')
		}
		fmt.Fprintf(&sb, "@@ -%d,%d +%d,%d @@\n", edits[start].a+btoi(na > 0), na, edits[start].b+btoi(nb > 0), nb)
		for _, e := range edits[start:end] {
			fmt.Fprintf(&sb, "%c%s\n", e.op, e.line)
		}
		i = end
	}
	return sb.String()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// edit is one line of a diff; a and b count the lines of each side
// before it (0-based positions).
type edit struct {
	op   byte // ' ', '-' or '+'
	line string
	a, b int
}

func splitLines(s []byte) []string {
	return strings.Split(strings.TrimSuffix(string(s), "\n"), "\n")
}

// lineEdits turns a into b with the fewest deleted and added lines (a
// longest common subsequence): Rego files are small enough for its
// quadratic table.
func lineEdits(a, b []string) []edit {
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []edit
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, edit{' ', a[i], i, j})
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, edit{'-', a[i], i, j})
			i++
		default:
			out = append(out, edit{'+', b[j], i, j})
			j++
		}
	}
	return out
}
