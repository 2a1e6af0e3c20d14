package yamlconf

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type inner struct {
	UserBase string        `yaml:"user_base"`
	Timeout  time.Duration `yaml:"timeout"`
	Size     *int          `yaml:"size"`
}

type outer struct {
	Name   string            `yaml:"name"`
	Items  []inner           `yaml:"items"`
	Labels map[string]string `yaml:"labels"`
	Nested *inner            `yaml:"nested"`
	Hidden string            `yaml:"-"`
}

func parse(t *testing.T, text string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(text), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

func TestDecodeNamesPathLineAndSuggestion(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"typo in a list item":  {"name: a\nitems:\n  - user_base: x\n  - usr_base: y\n", "items[1].usr_base: unknown key (did you mean user_base?) at line 4"},
		"swapped letters":      {"nmae: a\n", "nmae: unknown key (did you mean name?) at line 1"},
		"camel case":           {"nested:\n  userBase: x\n", "nested.userBase: unknown key (did you mean user_base?) at line 2"},
		"far from every key":   {"colour: red\n", "colour: unknown key (known: items, labels, name, nested) at line 1"},
		"tag - is not a key":   {"hidden: x\n", "hidden: unknown key"},
		"bad duration":         {"nested: {timeout: soon}\n", `nested.timeout: want a duration such as 90s, 5m or 1h, got "soon" at line 1`},
		"list for a string":    {"name: [a, b]\n", "name: want a string, got a list at line 1"},
		"scalar for a mapping": {"nested: 3\n", `nested: want a mapping (key: value), got "3" at line 1`},
		"scalar for a list":    {"\n\nitems: x\n", `items: want a list, got "x" at line 3`},
		"bad integer":          {"nested: {size: many}\n", `nested.size: want an integer, got "many"`},
	} {
		t.Run(name, func(t *testing.T) {
			var out outer
			err := Decode(parse(t, tc.yaml), &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDecodeReportsEveryProblem(t *testing.T) {
	var out outer
	err := Decode(parse(t, "nmae: a\nitems: [{usr_base: b}]\nnested: {timeout: x}\n"), &out)
	var all interface{ Unwrap() []error }
	if !errors.As(err, &all) || len(all.Unwrap()) != 3 {
		t.Fatalf("err = %v, want three problems", err)
	}
}

func TestDecodeValues(t *testing.T) {
	var out outer
	text := "base: &b {user_base: u, timeout: 5s}\n"
	type withBase struct {
		Base   inner `yaml:"base"`
		Nested inner `yaml:"nested"`
	}
	var wb withBase
	if err := Decode(parse(t, text+"nested:\n  <<: *b\n  timeout: 7s\n"), &wb); err != nil {
		t.Fatal(err)
	}
	if wb.Nested.UserBase != "u" || wb.Nested.Timeout != 7*time.Second {
		t.Fatalf("merge key: %+v", wb.Nested)
	}
	err := Decode(parse(t, "name: a\nitems: [{user_base: x, size: 0}]\nlabels: {k: v}\nnested: {timeout: 1m}\n"), &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.Name != "a" || len(out.Items) != 1 || out.Items[0].UserBase != "x" || out.Items[0].Size == nil || *out.Items[0].Size != 0 ||
		out.Labels["k"] != "v" || out.Nested == nil || out.Nested.Timeout != time.Minute {
		t.Fatalf("decoded %+v", out)
	}
}

type adapter struct {
	File string `yaml:"file"`
}

type envelope struct {
	Type   string `yaml:"type"`
	Config any    `yaml:",inline"`
}

func TestDecodeInlineInterfaceHoldsAdaptersKeys(t *testing.T) {
	a := &adapter{}
	e := envelope{Config: a}
	err := Decode(parse(t, "type: x\nflie: f\n"), &e)
	if err == nil || err.Error() != "flie: unknown key (did you mean file?) at line 2" {
		t.Fatalf("err = %v", err)
	}
	if err := Decode(parse(t, "type: x\nfile: f\n"), &e); err != nil || a.File != "f" || e.Type != "x" {
		t.Fatalf("decoded %+v %+v, %v", e, a, err)
	}
}

func TestPrefixAndLocate(t *testing.T) {
	root := parse(t, "services:\n  - name: a\n    issuer: b\nidentity:\n  - name: c\n    user_base: x\n")
	err := errors.Join(Errorf("services[0].issuer", "bad"), Prefix("identity[0]", errors.Join(Errorf("user_base", "bad"), Errorf("url", "required"))),
		Errorf("policy.source", "required"), Errorf("services[3].keys", "required"))
	got := Locate(root, err).Error()
	want := "services[0].issuer: bad at line 3\nidentity[0].user_base: bad at line 6\nidentity[0].url: required at line 5\npolicy.source: required\nservices[3].keys: required at line 1"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"file", "name", "type", "user_base", "token_ttl", "size"}
	for key, want := range map[string]string{"flie": "file", "usr_base": "user_base", "tokne_ttl": "token_ttl", "sise": "size", "x": "", "db": "", "password": ""} {
		if got := suggest(key, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", key, got, want)
		}
	}
}

// A yaml.Node field keeps its subtree as written, for a parser of its own
// (the opa section is OPA's document): none of its keys is "unknown".
func TestDecodeKeepsANodeAsWritten(t *testing.T) {
	var out struct {
		Name string     `yaml:"name"`
		Doc  *yaml.Node `yaml:"doc"`
	}
	if err := Decode(parse(t, "name: a\ndoc:\n  services: {s: {url: 'http://x'}}\n  anything: [1, 2]\n"), &out); err != nil {
		t.Fatal(err)
	}
	if out.Doc == nil || out.Doc.Kind != yaml.MappingNode || out.Doc.Line != 3 {
		t.Fatalf("doc = %+v, want the mapping at line 3", out.Doc)
	}
	var back map[string]any
	if err := out.Doc.Decode(&back); err != nil || len(back) != 2 || back["anything"].([]any)[1] != 2 {
		t.Fatalf("doc decoded back to %v (%v)", back, err)
	}
}
