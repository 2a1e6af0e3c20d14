package devicelogin

import (
	"errors"
	"fmt"
	"strings"
)

// Challenge is one challenge of a WWW-Authenticate header (RFC 9110
// §11.6.1): a scheme and its parameters, names in lower case.
type Challenge struct {
	Scheme string
	Params map[string]string
}

// ParseChallenges reads every challenge of a WWW-Authenticate header value:
// several challenges may share one header, parameter values may be quoted
// strings holding commas and escaped quotes, and schemes and parameter
// names are case-insensitive.
func ParseChallenges(h string) ([]Challenge, error) {
	p := &headerScanner{s: h}
	var out []Challenge
	for {
		p.skip(" \t,")
		if p.done() {
			return out, nil
		}
		scheme := p.token()
		if scheme == "" {
			return nil, errors.New("malformed WWW-Authenticate header: expected an auth scheme")
		}
		c := Challenge{Scheme: scheme, Params: map[string]string{}}
		if err := p.params(c.Params); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

// headerScanner walks a header value.
type headerScanner struct {
	s string
	i int
}

func (p *headerScanner) done() bool { return p.i >= len(p.s) }

func (p *headerScanner) skip(chars string) {
	for !p.done() && strings.IndexByte(chars, p.s[p.i]) >= 0 {
		p.i++
	}
}

// token reads an RFC 9110 token (tchar*).
func (p *headerScanner) token() string {
	start := p.i
	for !p.done() && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// params reads the auth-params after a scheme into into, up to the end or
// the next challenge's scheme (a token not followed by "="). A token68
// (Basic's or Negotiate's opaque blob) is kept under the name "".
func (p *headerScanner) params(into map[string]string) error {
	p.skip(" \t")
	if t, ok := p.token68(); ok {
		into[""] = t
		return nil
	}
	for first := true; ; first = false {
		p.skip(" \t")
		if p.done() || first && p.s[p.i] == ',' {
			return nil // the end, or a scheme without parameters
		}
		mark := p.i
		name := p.token()
		if name == "" {
			return fmt.Errorf("malformed WWW-Authenticate header: unexpected %q", p.s[p.i])
		}
		p.skip(" \t")
		if p.done() || p.s[p.i] != '=' {
			p.i = mark // the next challenge's scheme
			return nil
		}
		p.i++
		p.skip(" \t")
		value, err := p.value()
		if err != nil {
			return err
		}
		into[strings.ToLower(name)] = value
		p.skip(" \t")
		if !p.done() && p.s[p.i] != ',' {
			return fmt.Errorf("malformed WWW-Authenticate header: expected a comma after %s", name)
		}
		p.skip(", \t")
	}
}

// token68 reads a token68 (RFC 9110 §11.2) when that is all there is up to
// the end or the next comma.
func (p *headerScanner) token68() (string, bool) {
	start, j := p.i, p.i
	for j < len(p.s) && (isAlnum(p.s[j]) || strings.IndexByte("-._~+/", p.s[j]) >= 0) {
		j++
	}
	if j == start {
		return "", false
	}
	for j < len(p.s) && p.s[j] == '=' {
		j++
	}
	end := j
	for j < len(p.s) && (p.s[j] == ' ' || p.s[j] == '\t') {
		j++
	}
	if j < len(p.s) && p.s[j] != ',' {
		return "", false
	}
	p.i = j
	return p.s[start:end], true
}

// value reads a token or a quoted string (with \-escapes).
func (p *headerScanner) value() (string, error) {
	if p.done() || p.s[p.i] != '"' {
		return p.token(), nil
	}
	p.i++
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.done() {
				return "", errors.New("malformed WWW-Authenticate header: unterminated quoted string")
			}
			b.WriteByte(p.s[p.i])
			p.i++
		default:
			b.WriteByte(c)
		}
	}
	return "", errors.New("malformed WWW-Authenticate header: unterminated quoted string")
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isTchar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
