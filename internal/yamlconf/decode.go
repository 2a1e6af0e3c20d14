package yamlconf

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Decode decodes n into out (a pointer) strictly: a key out has no field
// for is an error that suggests the nearest known key; a value of the wrong
// kind is an error that says what is wanted. Every problem is reported, as an
// *Error with its path relative to n and its real line; errors.Join holds
// them. Keys follow yaml tags (",inline" included, also on an interface
// field holding a pointer to a struct, for an envelope around an adapter's
// own Config). A yaml.Node field takes the node as written, unchecked (as
// yaml.v3 does). A yaml.Unmarshaler decodes itself; its *Error paths are taken
// as relative to it.
//
// yaml.v3 has strict decoding only from bytes (Decoder.KnownFields), not from
// a Node, and its errors name Go types; this walks the node instead, so the
// lines are the file's and the names are the YAML's.
func Decode(n *yaml.Node, out any) error {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("yamlconf.Decode: want a non-nil pointer, got %T", out)
	}
	var d decoder
	d.value(n, v.Elem(), "")
	return errors.Join(d.errs...)
}

type decoder struct{ errs []error }

func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, &Error{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	nodeType        = reflect.TypeFor[yaml.Node]()
)

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.Kind() == reflect.Pointer {
		if isNull(n) {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
		return
	}
	if v.Type() == nodeType { // kept as written, for a parser of its own
		v.Set(reflect.ValueOf(*n))
		return
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.errs = append(d.errs, Prefix(path, Locate(n, withLine(err, n.Line))))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.Map:
		d.dict(n, v, path)
	default:
		if n.Kind != yaml.ScalarNode && v.Kind() != reflect.Interface {
			d.fail(path, n.Line, "want %s, got %s", want(v.Type()), kindName(n))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(path, n.Line, "want %s, got %q", want(v.Type()), n.Value)
		}
	}
}

// withLine gives a plain error from an Unmarshaler the line of its node.
func withLine(err error, line int) error {
	if _, ok := err.(*Error); ok {
		return err
	}
	if _, ok := err.(interface{ Unwrap() []error }); ok {
		return err
	}
	return &Error{Line: line, Msg: err.Error()}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, "want a mapping (key: value), got %s", kindName(n))
		return
	}
	fields := map[string]reflect.Value{}
	collectFields(v, fields)
	for _, kv := range pairs(n) {
		key := kv[0].Value
		f, ok := fields[key]
		if !ok {
			d.fail(Join(path, key), kv[0].Line, "unknown key%s", hint(key, fields))
			continue
		}
		d.value(kv[1], f, Join(path, key))
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		v.SetZero()
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(path, n.Line, "want a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) dict(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, "want a mapping (key: value), got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for _, kv := range pairs(n) {
		k := reflect.New(v.Type().Key()).Elem()
		d.value(kv[0], k, path)
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(kv[1], e, Join(path, kv[0].Value))
		v.SetMapIndex(k, e)
	}
}

// collectFields maps the YAML keys of struct v to its fields, following
// ",inline" into structs, pointers to structs and interfaces holding them.
func collectFields(v reflect.Value, out map[string]reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		if !sf.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(opts, ","), "inline") {
			f := v.Field(i)
			for f.Kind() == reflect.Interface || f.Kind() == reflect.Pointer {
				if f.Kind() == reflect.Pointer && f.IsNil() {
					f.Set(reflect.New(f.Type().Elem()))
				}
				f = f.Elem()
			}
			if f.Kind() == reflect.Struct {
				collectFields(f, out)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name) // yaml.v3's default
		}
		out[name] = v.Field(i)
	}
}

// pairs lists the key and value nodes of mapping n, merge keys (<<) first
// so the mapping's own keys are decoded after, and win.
func pairs(n *yaml.Node) [][2]*yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var merged, own [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag != "!!merge" {
			own = append(own, [2]*yaml.Node{k, v})
			continue
		}
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if v.Kind == yaml.SequenceNode {
			for _, m := range v.Content {
				if m.Kind == yaml.AliasNode {
					m = m.Alias
				}
				merged = append(merged, pairs(m)...)
			}
		} else {
			merged = append(merged, pairs(v)...)
		}
	}
	return append(merged, own...)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// want says in YAML terms what a value of type t looks like.
func want(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration such as 90s, 5m or 1h"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a value"
}
