package htpasswd_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/identity/htpasswd"
)

// FuzzParse: any file content parses or is refused with an error naming
// a line; it never panics, and every accepted hash is bcrypt.
func FuzzParse(f *testing.F) {
	f.Add("alice:$2y$10$abcdefghijklmnopqrstuuJ3Nh0L9Zx0Q0j6yD8pQ9Q6G8xkY1Yj2\n")
	f.Add("bob:{SHA}x\n# comment\n\n")
	f.Add("::\n:x\nx:\n")
	f.Fuzz(func(t *testing.T, data string) {
		users, err := htpasswd.Parse("fuzz", []byte(data))
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for u, h := range users {
			if u == "" || !strings.HasPrefix(string(h), "$2a$") && !strings.HasPrefix(string(h), "$2b$") && !strings.HasPrefix(string(h), "$2y$") {
				t.Fatalf("accepted user %q with hash %q", u, h)
			}
		}
	})
}
