package scope

import "testing"

func BenchmarkParse(b *testing.B) {
	for _, c := range []struct{ name, value string }{
		{"one", "repository:team/app:pull,push"},
		{"crane-joined", "repository:team/app:pull,push repository:library/base:pull repository:localhost:5000/x(plugin):pull"},
	} {
		b.Run(c.name, func(b *testing.B) {
			in := []string{c.value}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
