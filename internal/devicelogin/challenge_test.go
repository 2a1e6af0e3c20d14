package devicelogin

import (
	"fmt"
	"testing"
)

func TestParseChallenges(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`Bearer realm="https://auth.example.com/token",service="registry.example.com"`,
			`[{Bearer map[realm:https://auth.example.com/token service:registry.example.com]}]`},
		// Scheme and names in any case, spaces around = and commas.
		{`bearer Realm = "https://a/token" ,  SERVICE=reg`, `[{bearer map[realm:https://a/token service:reg]}]`},
		// Commas and escaped quotes inside quoted strings.
		{`Bearer realm="https://a/token",scope="repository:x/y:pull,push",error="say \"no\""`,
			`[{Bearer map[error:say "no" realm:https://a/token scope:repository:x/y:pull,push]}]`},
		// Several challenges in one header, with and without parameters.
		{`Basic realm="Registry", Bearer realm="https://a/token",service="r"`,
			`[{Basic map[realm:Registry]} {Bearer map[realm:https://a/token service:r]}]`},
		{`Negotiate, Bearer realm="https://a/token"`, `[{Negotiate map[]} {Bearer map[realm:https://a/token]}]`},
		{`Negotiate YIIB/w+==, Bearer realm=x`, `[{Negotiate map[:YIIB/w+==]} {Bearer map[realm:x]}]`},
		{`Basic`, `[{Basic map[]}]`},
		{``, `[]`},
	} {
		got, err := ParseChallenges(tc.in)
		if err != nil {
			t.Errorf("ParseChallenges(%s): %v", tc.in, err)
			continue
		}
		if s := fmt.Sprint(got); s != tc.want {
			t.Errorf("ParseChallenges(%s)\n got %s\nwant %s", tc.in, s, tc.want)
		}
	}
}

func TestParseChallengesRefusesMalformedHeaders(t *testing.T) {
	for _, in := range []string{
		`Bearer realm="https://a/token`, // unterminated quote
		`Bearer realm="a" service="b"`,  // no comma between parameters
		`Bearer realm="a\`,
		`"Bearer"`,
	} {
		if got, err := ParseChallenges(in); err == nil {
			t.Errorf("ParseChallenges(%s) = %v, want an error", in, got)
		}
	}
}

func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{`Bearer realm="https://a/token",service="r"`, `Basic realm="x", Bearer realm=y`, `Negotiate abc==`, `a b=",\"", c`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		cs, err := ParseChallenges(h)
		if err != nil {
			return
		}
		for _, c := range cs {
			if c.Scheme == "" {
				t.Fatalf("%q: a challenge without a scheme: %v", h, cs)
			}
		}
	})
}
