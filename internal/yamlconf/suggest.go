package yamlconf

import (
	"maps"
	"slices"
	"strings"
)

// hint says which known key an unknown one probably meant: the nearest by
// edit distance, if it is near enough to be a typo; otherwise it lists the
// keys that are known there.
func hint[V any](key string, known map[string]V) string {
	names := slices.Sorted(maps.Keys(known))
	if s := suggest(key, names); s != "" {
		return " (did you mean " + s + "?)"
	}
	if len(names) == 0 {
		return ""
	}
	return " (known: " + strings.Join(names, ", ") + ")"
}

// suggest returns the name nearest to key, or "" when none is close: at most
// two edits, and fewer than a third of the key. userBase and user-base
// find user_base.
func suggest(key string, names []string) string {
	norm := func(s string) string { return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s)) }
	best, bestDist := "", 3
	for _, name := range names {
		d := distance(norm(key), norm(name))
		if d < bestDist && d*3 <= len(key) {
			best, bestDist = name, d
		}
	}
	return best
}

// distance is the optimal string alignment distance: insertions, deletions,
// substitutions and swaps of two neighbours (flie, file) each cost one.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
