package docs

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// An Example is one command line and where it was written. The examples of
// one block (a fenced block, or one --help text) run in order in one
// directory, as a reader would type them.
type Example struct {
	Block  string // file:line of the fence, or "tollgate robot create --help"
	Source string // file:line, or the --help command
	Line   string
}

// invokes matches a shell line that runs tollgate, at its start or after a pipe.
var invokes = regexp.MustCompile(`(^|\|\s*)(\./bin/)?tollgate\s`)

// MarkdownExamples extracts the examples of a Markdown file.
func MarkdownExamples(path string) ([]Example, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Example
	var fence string // "sh", "console", or another language / none
	inBlock, block := false, ""
	var cont *Example
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if lang, ok := strings.CutPrefix(line, "```"); ok {
			inBlock, fence, block = !inBlock, lang, path+":"+strconv.Itoa(n)
			continue
		}
		if !inBlock || (fence != "sh" && fence != "console") {
			continue
		}
		if cont != nil {
			cont.Line += "\n" + line
			if !strings.HasSuffix(line, `\`) {
				out, cont = append(out, *cont), nil
			}
			continue
		}
		if fence == "console" {
			var ok bool
			if line, ok = strings.CutPrefix(line, "$ "); !ok {
				continue // output
			}
		}
		if !invokes.MatchString(line) {
			continue
		}
		ex := Example{Block: block, Source: path + ":" + strconv.Itoa(n), Line: line}
		if strings.HasSuffix(line, `\`) {
			cont = &ex
			continue
		}
		out = append(out, ex)
	}
	return out, sc.Err()
}

// HelpExamples extracts the examples of one --help text.
func HelpExamples(source, help string) []Example {
	var out []Example
	in := false
	for _, line := range strings.Split(help, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "Example:" || t == "Examples:":
			in = true
		case t == "":
			in = false
		case in:
			out = append(out, Example{Block: source, Source: source, Line: t})
		}
	}
	return out
}

// Subcommands lists the command names of a --help text's COMMANDS section.
func Subcommands(help string) []string {
	var out []string
	in := false
	for _, line := range strings.Split(help, "\n") {
		switch {
		case strings.HasSuffix(strings.TrimSpace(line), "COMMANDS:"):
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in && strings.HasPrefix(line, "   "):
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			name = strings.TrimSuffix(name, ",")
			if name != "help" && name != "h" {
				out = append(out, name)
			}
		}
	}
	return out
}

// The convention, on a sample: what is an example and what is not.
func TestExtractionConvention(t *testing.T) {
	md := filepath.Join(t.TempDir(), "x.md")
	sample := "```sh\nmake run\ntollgate keygen --out k   # a comment\nprintf x | tollgate htpasswd add f u\n" +
		"tollgate token inspect --need a \\\n  \"$TOKEN\"\n```\n\n```console\n$ ./bin/tollgate version\ntollgate dev\n```\n\n" +
		"```yaml\ntollgate: not a command\n```\n    tollgate serve (not in a block)\n"
	if err := os.WriteFile(md, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := MarkdownExamples(md)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, ex := range got {
		lines = append(lines, ex.Line)
	}
	want := []string{"tollgate keygen --out k   # a comment", "printf x | tollgate htpasswd add f u",
		"tollgate token inspect --need a \\\n\"$TOKEN\"", "./bin/tollgate version"}
	if !slices.Equal(lines, want) {
		t.Errorf("examples %q,\nwant %q", lines, want)
	}
	help := "DESCRIPTION:\n   Text.\n\n   Examples:\n      tollgate a\n      tollgate b\n\n   tollgate c\n\nCOMMANDS:\n   add, a  adds\n   help, h  help\n"
	if ex := HelpExamples("h", help); len(ex) != 2 || ex[1].Line != "tollgate b" {
		t.Errorf("help examples %+v", ex)
	}
	if subs := Subcommands(help); !slices.Equal(subs, []string{"add"}) {
		t.Errorf("subcommands %q", subs)
	}
}
