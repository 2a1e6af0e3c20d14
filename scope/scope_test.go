package scope

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []Scope
	}{
		{"no scope is a login check", nil, nil},
		{"empty value is a login check", []string{""}, nil},
		{"blank value is a login check", []string{"  \t "}, nil},
		{"simple", []string{"repository:team/app:pull"},
			[]Scope{{"repository", "team/app", []string{"pull"}}}},
		{"several actions keep order", []string{"repository:team/app:push,pull"},
			[]Scope{{"repository", "team/app", []string{"push", "pull"}}}},
		{"name with host and port keeps its colons", []string{"repository:registry.example.com:5000/team/app:pull,push"},
			[]Scope{{"repository", "registry.example.com:5000/team/app", []string{"pull", "push"}}}},
		{"class is stripped", []string{"repository(plugin):vieux/sshfs:pull"},
			[]Scope{{"repository", "vieux/sshfs", []string{"pull"}}}},
		{"catalog", []string{"registry:catalog:*"},
			[]Scope{{"registry", "catalog", []string{"*"}}}},
		{"space separated scopes in one value", []string{"repository:a/b:pull repository:c/d:push"},
			[]Scope{{"repository", "a/b", []string{"pull"}}, {"repository", "c/d", []string{"push"}}}},
		{"repeated values", []string{"repository:a/b:pull", "repository:c/d:pull,push"},
			[]Scope{{"repository", "a/b", []string{"pull"}}, {"repository", "c/d", []string{"pull", "push"}}}},
		{"duplicate scopes merge", []string{"repository:a/b:pull", "repository:a/b:push,pull"},
			[]Scope{{"repository", "a/b", []string{"pull", "push"}}}},
		{"empty and duplicate actions dropped", []string{"repository:a/b:,pull,,pull,push,"},
			[]Scope{{"repository", "a/b", []string{"pull", "push"}}}},
		{"no actions at all", []string{"repository:a/b:"},
			[]Scope{{"repository", "a/b", []string{}}}},
		{"class and plain type merge", []string{"repository(plugin):a/b:pull repository:a/b:push"},
			[]Scope{{"repository", "a/b", []string{"pull", "push"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.values)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.values, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q) = %#v, want %#v", tt.values, got, tt.want)
			}
		})
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	tests := []struct{ name, value string }{
		{"no colon", "repository"},
		{"one colon", "repository:team/app"},
		{"empty type", ":team/app:pull"},
		{"empty name", "repository::pull"},
		{"upper-case type", "Repository:team/app:pull"},
		{"unclosed class", "repository(plugin:a/b:pull"},
		{"empty class", "repository():a/b:pull"},
		{"junk after class", "repository(x)y:a/b:pull"},
		{"bad action", "repository:a/b:pu$ll"},
		{"star inside an action", "repository:a/b:pu*"},
		{"control character in name", "repository:a/\x01b:pull"},
		{"DEL in name", "repository:a/\x7fb:pull"},
		{"invalid UTF-8", "repository:a/\xffb:pull"},
		{"too long", "repository:" + strings.Repeat("a", 2000) + ":pull"},
		{"name too long", "repository:" + strings.Repeat("a", maxNameLen+1) + ":pull"},
		{"too many actions", "repository:a:" + strings.Repeat("x,", 0) + "a1,a2,a3,a4,a5,a6,a7,a8,a9,b1,b2,b3,b4,b5,b6,b7,b8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]string{tt.value})
			if !errors.Is(err, ErrBadScope) {
				t.Fatalf("Parse(%q) = %v, %v; want ErrBadScope", tt.value, got, err)
			}
		})
	}
}

func TestParseLimitsScopeCount(t *testing.T) {
	var b strings.Builder
	for i := 0; i <= maxScopes; i++ {
		b.WriteString("repository:r")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(":pull ")
	}
	if _, err := Parse([]string{b.String()}); !errors.Is(err, ErrBadScope) {
		t.Fatalf("want ErrBadScope for %d scopes, got %v", maxScopes+1, err)
	}
	// Many repeats of the same scope merge and stay within the limit.
	same := strings.Repeat("repository:a/b:pull ", 500)
	got, err := Parse([]string{same})
	if err != nil || len(got) != 1 {
		t.Fatalf("Parse(repeated) = %v, %v; want one scope", got, err)
	}
}

func TestIntersect(t *testing.T) {
	set := func(a ...string) map[string]bool {
		m := map[string]bool{}
		for _, x := range a {
			m[x] = true
		}
		return m
	}
	tests := []struct {
		name      string
		requested []string
		allowed   map[string]bool
		want      []string
	}{
		{"nothing allowed", []string{"pull"}, nil, nil},
		{"subset", []string{"pull", "push"}, set("pull"), []string{"pull"}},
		{"never more than asked", []string{"pull"}, set("pull", "push", "delete"), []string{"pull"}},
		{"requested order kept", []string{"push", "pull"}, set("pull", "push"), []string{"push", "pull"}},
		{"star expands to held actions", []string{"*"}, set("delete", "push", "pull"), []string{"pull", "push", "delete"}},
		{"star expands unknown actions sorted after known ones", []string{"*"}, set("zeta", "alpha", "pull"), []string{"pull", "alpha", "zeta"}},
		{"star with nothing held", []string{"*"}, set(), nil},
		{"allowed star covers requested actions", []string{"pull", "delete"}, set("*"), []string{"pull", "delete"}},
		{"allowed star and requested star", []string{"*"}, set("*"), []string{"*"}},
		{"star plus explicit action does not duplicate", []string{"pull", "*"}, set("pull", "push"), []string{"pull", "push"}},
		{"no actions requested", []string{}, set("pull"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Intersect(tt.requested, tt.allowed)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Intersect(%v, %v) = %v, want %v", tt.requested, tt.allowed, got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"repository:team/app:pull,push",
		"repository(plugin):a:b:c:pull",
		"registry:catalog:*",
		"repository:a/b:pull repository:c:push",
		"::", "a:b:", "\xff:\x00:*",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		scopes, err := Parse([]string{in})
		if err != nil {
			if !errors.Is(err, ErrBadScope) {
				t.Fatalf("error %v is not ErrBadScope", err)
			}
			return
		}
		if len(scopes) > maxScopes {
			t.Fatalf("%d scopes exceed the limit", len(scopes))
		}
		seen := map[string]bool{}
		for _, s := range scopes {
			if s.Type == "" || s.Name == "" || strings.ContainsAny(s.Type, "():") {
				t.Fatalf("bad scope %#v from %q", s, in)
			}
			if !utf8.ValidString(s.Name) {
				t.Fatalf("invalid UTF-8 name from %q", in)
			}
			key := s.Type + "\x00" + s.Name
			if seen[key] {
				t.Fatalf("duplicate scope %s from %q", key, in)
			}
			seen[key] = true
			acts := map[string]bool{}
			for _, a := range s.Actions {
				if a == "" || acts[a] || strings.ContainsAny(a, ", ") {
					t.Fatalf("bad action list %q from %q", s.Actions, in)
				}
				acts[a] = true
			}
			// A parsed scope renders and re-parses to itself.
			again, err := Parse([]string{s.String()})
			if len(s.Actions) > 0 && (err != nil || len(again) != 1 || !reflect.DeepEqual(again[0], s)) {
				t.Fatalf("round trip of %#v gave %#v, %v", s, again, err)
			}
		}
	})
}
