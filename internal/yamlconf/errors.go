// Package yamlconf decodes YAML into typed configuration strictly, and names
// every problem by its YAML path and its line in the file, never by a Go type.
package yamlconf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a configuration: where (the YAML path, the line
// when known) and what.
type Error struct {
	Path string // services[0].token_ttl; relative to whoever decoded it
	Line int    // 0 when not known yet (see Locate)
	Msg  string
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Path != "" {
		s = e.Path + ": " + s
	}
	if e.Line > 0 {
		s += " at line " + strconv.Itoa(e.Line)
	}
	return s
}

// Errorf is a problem at path, for a Validate method.
func Errorf(path, format string, args ...any) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Join joins path and a child key or index: Join("a", "b") is a.b,
// Join("a", "[0]") is a[0], Join("", "b") is b.
func Join(path, child string) string {
	switch {
	case path == "":
		return child
	case child == "":
		return path
	case strings.HasPrefix(child, "["):
		return path + child
	}
	return path + "." + child
}

// Prefix puts prefix in front of the path of every problem in err (a single
// error or an errors.Join of them), so an adapter's errors, named relative to
// its own configuration, read identity[1].user_base. An error that is not
// an *Error becomes one at prefix.
func Prefix(prefix string, err error) error {
	return walk(err, func(e *Error) { e.Path = Join(prefix, e.Path) })
}

// Locate gives every problem in err that has no line yet the line of its
// path in root: the key's own line, or for a missing key the line of the
// mapping that should hold it. root is the document (or its top mapping).
func Locate(root *yaml.Node, err error) error {
	return walk(err, func(e *Error) {
		if e.Line == 0 {
			e.Line = lineOf(root, e.Path)
		}
	})
}

// walk applies fix to a copy of every *Error in err; other leaves become
// an *Error with no path first.
func walk(err error, fix func(*Error)) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, walk(e, fix))
		}
		return errors.Join(out...)
	}
	e := &Error{Msg: err.Error()}
	if ye, ok := err.(*Error); ok {
		c := *ye
		e = &c
	}
	fix(e)
	return e
}

// lineOf finds the line of path in root. A key that is absent is placed at
// the mapping that should hold it; an absent top-level key has no line.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	if path == "" && n != nil {
		line = n.Line
	}
	for _, seg := range splitPath(path) {
		next, keyLine := child(n, seg)
		if next == nil {
			if keyLine > 0 {
				return keyLine
			}
			return line
		}
		line, n = keyLine, next
	}
	return line
}

// child returns the node of seg (a key, or [i]) under n and the line that
// names it (the key's line for a mapping entry).
func child(n *yaml.Node, seg string) (*yaml.Node, int) {
	if n == nil {
		return nil, 0
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if i, ok := strings.CutPrefix(seg, "["); ok {
		idx, err := strconv.Atoi(strings.TrimSuffix(i, "]"))
		if n.Kind != yaml.SequenceNode || err != nil || idx < 0 || idx >= len(n.Content) {
			return nil, 0
		}
		return n.Content[idx], n.Content[idx].Line
	}
	for _, kv := range pairs(n) {
		if kv[0].Value == seg {
			return kv[1], kv[0].Line
		}
	}
	return nil, 0
}

// splitPath splits services[0].token_ttl into services, [0], token_ttl.
func splitPath(path string) []string {
	var out []string
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			i := strings.Index(part[1:], "[")
			if part[0] == '[' {
				i = strings.Index(part, "]")
				out, part = append(out, part[:i+1]), part[i+1:]
				continue
			}
			if i < 0 {
				out, part = append(out, part), ""
				continue
			}
			out, part = append(out, part[:i+1]), part[i+1:]
		}
	}
	return out
}
