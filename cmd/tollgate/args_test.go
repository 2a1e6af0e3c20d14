package main

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// parsed is what a command's action saw: its arguments and every flag's value.
type parsed struct {
	command string
	args    []string
	flags   map[string]string
}

// recordingApp is the real CLI with every action replaced by a recorder, so
// a test sees how the command line was read without running anything.
func recordingApp(got *parsed) *cli.App {
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	app.ExitErrHandler = func(*cli.Context, error) {}
	var walk func(cmds []*cli.Command, prefix string)
	walk = func(cmds []*cli.Command, prefix string) {
		for _, c := range cmds {
			path := strings.TrimSpace(prefix + " " + c.Name)
			walk(c.Subcommands, path)
			if c.Action == nil {
				continue
			}
			c.Action = func(ctx *cli.Context) error {
				*got = parsed{command: path, args: ctx.Args().Slice(), flags: map[string]string{}}
				for _, f := range ctx.Command.Flags {
					name := f.Names()[0]
					got.flags[name] = fmt.Sprint(ctx.Value(name))
					if _, ok := f.(*cli.StringSliceFlag); ok {
						got.flags[name] = fmt.Sprint(ctx.StringSlice(name))
					}
				}
				return nil
			}
		}
	}
	walk(app.Commands, "")
	return app
}

func parse(t *testing.T, args []string) (parsed, error) {
	t.Helper()
	var got parsed
	app := recordingApp(&got)
	err := runApp(app, append([]string{"tollgate"}, args...))
	return got, err
}

// leafCommands lists every command that runs an action, as "robot create".
func leafCommands(cmds []*cli.Command, prefix string) []string {
	var out []string
	for _, c := range cmds {
		if c.Action != nil && len(c.Subcommands) == 0 {
			out = append(out, strings.TrimSpace(prefix+" "+c.Name))
		}
		out = append(out, leafCommands(c.Subcommands, prefix+" "+c.Name)...)
	}
	return out
}

// Every command reads its flags after its arguments as well as before:
// that is how people type them, and how the README's examples read.
func TestFlagsAfterArgumentsWorkForEveryCommand(t *testing.T) {
	cases := []struct {
		command       string // the command path
		before, after []string
	}{
		{"serve", []string{"--listen", "127.0.0.1:1", "--check"}, []string{"--check", "--listen", "127.0.0.1:1"}},
		{"keygen", []string{"--out", "k", "--type", "rsa"}, []string{"--type", "rsa", "--out", "k"}},
		{"htpasswd add", []string{"--cost", "4", "users", "alice"}, []string{"users", "alice", "--cost", "4"}},
		{"htpasswd add", []string{"--cost=4", "users", "alice"}, []string{"users", "--cost=4", "alice"}},
		{"htpasswd remove", []string{"users", "alice"}, []string{"users", "alice"}},
		{"htpasswd verify", []string{"users", "alice"}, []string{"users", "alice"}},
		{"registry-config", []string{"--config", "c.yaml", "--bundle", "b.pem"}, []string{"--bundle", "b.pem", "--config", "c.yaml"}},
		{"policy test", []string{"-v", "--run", "test_guest", "."}, []string{".", "-v", "--run", "test_guest"}},
		{"policy test", []string{"--coverage", "--threshold", "90", "a", "b"}, []string{"a", "--coverage", "b", "--threshold", "90"}},
		{"policy check", []string{"--query", "data.x", "p"}, []string{"p", "--query", "data.x"}},
		{"policy eval", []string{"--policy", "p", "--user", "bob", "--scope", "repository:a:pull,push", "--explain"},
			[]string{"--explain", "--scope", "repository:a:pull,push", "--user", "bob", "--policy", "p"}},
		{"policy schema", nil, nil},
		{"policy fmt", []string{"-l", "--fail", "a", "b"}, []string{"a", "-l", "b", "--fail"}},
		{"bundle build", []string{"-o", "b.tar.gz", "--revision", "r1", "dir"}, []string{"dir", "-o", "b.tar.gz", "--revision", "r1"}},
		{"bundle sign", []string{"--signing-key", "k.pem", "--signing-alg", "ES256", "b.tar.gz"}, []string{"b.tar.gz", "--signing-key", "k.pem", "--signing-alg", "ES256"}},
		{"robot create", []string{"--file", "r.json", "--scope", "repository:team/*:pull,push", "--expires", "90d", "--description", "team CI", "team-ci"},
			[]string{"team-ci", "--scope", "repository:team/*:pull,push", "--expires", "90d", "--description", "team CI", "--file", "r.json"}},
		{"robot list", []string{"--file", "r.json"}, []string{"--file", "r.json"}},
		{"robot rotate", []string{"-f", "r.json", "--expires", "12h", "team-ci"}, []string{"team-ci", "--expires", "12h", "-f", "r.json"}},
		{"robot revoke", []string{"--file", "r.json", "team-ci"}, []string{"team-ci", "--file", "r.json"}},
		{"token inspect", []string{"--need", "repository:a:push", "--format", "json", "TOKEN"}, []string{"TOKEN", "--need", "repository:a:push", "--format", "json"}},
		{"token inspect", []string{"--broker", "http://b", "-"}, []string{"-", "--broker", "http://b"}},
		{"token revoke", []string{"--config", "c.yaml", "--subject", "bob"}, []string{"--subject", "bob", "--config", "c.yaml"}},
		{"session list", []string{"--config", "c.yaml", "--user", "dana"}, []string{"--user", "dana", "--config", "c.yaml"}},
		{"session revoke", []string{"--config", "c.yaml", "S1"}, []string{"S1", "--config", "c.yaml"}},
		{"doctor", []string{"--registry-config", "r.yml", "--registry-url", "http://r"}, []string{"--registry-url", "http://r", "--registry-config", "r.yml"}},
		{"login", []string{"--connector", "corp", "--insecure", "r.example"}, []string{"r.example", "--connector", "corp", "--insecure"}},
		{"logout", []string{"--insecure", "r.example"}, []string{"r.example", "--insecure"}},
		{"install-credential-helper", []string{"dir"}, []string{"dir"}},
		{"version", nil, nil},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.command] = true
		t.Run(tc.command+" "+strings.Join(tc.after, " "), func(t *testing.T) {
			path := strings.Fields(tc.command)
			want, err := parse(t, slices.Concat(path, tc.before))
			if err != nil {
				t.Fatalf("flags before the arguments: %v", err)
			}
			got, err := parse(t, slices.Concat(path, tc.after))
			if err != nil {
				t.Fatalf("flags after the arguments: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("flags after the arguments read as\n%+v\nbefore them as\n%+v", got, want)
			}
			if want.command != tc.command {
				t.Errorf("ran %q, want %q", want.command, tc.command)
			}
		})
	}
	for _, c := range leafCommands(newApp().Commands, "") {
		if !covered[c] {
			t.Errorf("command %q has no case here: add one", c)
		}
	}
}

// A flag's value is never taken for an argument, nor an argument for a
// value; after `--` nothing is a flag.
func TestFlagsFirstKeepsValuesAndArguments(t *testing.T) {
	cases := []struct {
		args      []string
		wantArgs  []string
		wantFlags map[string]string
	}{
		{[]string{"policy", "test", "dir", "-v", "other"}, []string{"dir", "other"}, map[string]string{"verbose": "true"}},
		{[]string{"policy", "test", "dir", "--run", "-v"}, []string{"dir"}, map[string]string{"run": "-v", "verbose": "false"}},
		{[]string{"policy", "test", "dir", "--", "-v"}, []string{"dir", "-v"}, map[string]string{"verbose": "false"}},
		{[]string{"token", "inspect", "--format", "json", "-"}, []string{"-"}, map[string]string{"format": "json"}},
		{[]string{"robot", "create", "a", "--scope", "repository:x:pull", "--scope", "repository:y:pull", "--expires", "never"},
			[]string{"a"}, map[string]string{"scope": "[repository:x:pull repository:y:pull]", "expires": "never"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := parse(t, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.args, tc.wantArgs) {
				t.Errorf("arguments %q, want %q", got.args, tc.wantArgs)
			}
			for name, want := range tc.wantFlags {
				if got.flags[name] != want {
					t.Errorf("--%s = %s, want %s", name, got.flags[name], want)
				}
			}
		})
	}
}

// An unknown flag after an argument is still an error, not an argument.
func TestUnknownFlagAfterArgumentIsAnError(t *testing.T) {
	if _, err := parse(t, []string{"robot", "revoke", "team-ci", "--no-such-flag"}); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("err = %v, want flag provided but not defined: -no-such-flag", err)
	}
}
