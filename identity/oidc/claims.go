package oidc

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// lookupClaim finds a claim by name, or by a dotted path into nested objects
// ("kubernetes.io.namespace" is claims["kubernetes.io"]["namespace"]). A
// literal name wins over a path, so names that hold dots themselves (URLs,
// "kubernetes.io") work; at each level the longest matching name is tried first.
func lookupClaim(claims map[string]any, path string) any {
	if v, ok := claims[path]; ok {
		return v
	}
	for i := strings.LastIndexByte(path, '.'); i > 0; i = strings.LastIndexByte(path[:i], '.') {
		if inner, ok := claims[path[:i]].(map[string]any); ok {
			if v := lookupClaim(inner, path[i+1:]); v != nil {
				return v
			}
		}
	}
	return nil
}

// claimMatches reports whether a claim has the expected value: a string
// equal to it, a number or boolean whose JSON form is it, or an array
// holding such an element.
func claimMatches(v any, want string) bool {
	switch x := v.(type) {
	case string:
		return x == want
	case bool:
		return strconv.FormatBool(x) == want
	case float64:
		b, _ := json.Marshal(x)
		return string(b) == want
	case json.Number:
		return x.String() == want
	case []any:
		return slices.ContainsFunc(x, func(e any) bool {
			_, nested := e.([]any)
			return !nested && claimMatches(e, want)
		})
	}
	return false
}
