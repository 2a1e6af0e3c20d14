package htpasswd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/identitytest"
	"github.com/tollgate/tollgate/test/timingtest"
)

// rightHash holds hashes of the password "right-pw" at the costs the timing
// tests use: 5 is `htpasswd -B`'s default, 12 a slow one. Under the race
// detector bcrypt runs about 15 times slower (cost 12 takes 12 s there), so 6
// stands in for 12: still twice cost 5, and not the cost 10 the chain's old
// stand-in had.
var rightHash = map[int]string{
	5:  "$2a$05$qJKgxmr6dwdnb3EE6HUBt.bS6bcVlj9nfd1HRTKnZphCKelb6WmAm",
	6:  "$2a$06$qFP/FAB.rLgWm47dgvN1w.fpm8EQ5aOWOlguX5ZCpS9F4ir3F68DC",
	12: "$2a$12$o0nFNWmpR68vyqEVjmHOv.cVzG95qraHQpDGGXHw9hfpQg/lc8iMa",
}

// slowCost is the slow cost of the timing tests; race_test.go lowers it.
var slowCost = 12

// chainOver opens a file of the given users and costs behind a chain, the
// way the broker asks it.
func chainOver(t *testing.T, costs map[string]int) *identity.Chain {
	t.Helper()
	var lines []string
	for user, cost := range costs {
		lines = append(lines, user+":"+rightHash[cost])
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return identity.NewChain([]identity.Connector{identitytest.Connector(t, "local", f)}, nil)
}

// refused is a login of user with a wrong password, which must be refused.
func refused(t *testing.T, c *identity.Chain, user string) timingtest.Path {
	return timingtest.Path{Name: user, Run: func() {
		if _, ok, err := c.Login(context.Background(), user, "wrong-pw"); ok || err != nil {
			t.Fatalf("%s: ok=%v err=%v, want refused", user, ok, err)
		}
	}}
}

func TestUnknownNameCostsWhatAWrongPasswordCosts(t *testing.T) {
	for _, tc := range []struct{ cost, n int }{{5, 15}, {slowCost, 5}} {
		t.Run(fmt.Sprintf("cost %d", tc.cost), func(t *testing.T) {
			c := chainOver(t, map[string]int{"alice": tc.cost, "bob": tc.cost})
			timingtest.Alike(t, tc.n, refused(t, c, "alice"), refused(t, c, "mallory"))
		})
	}
}

// In a file mixing costs no single cost hides every entry: an unknown name
// must cost what one of the entries costs.
func TestUnknownNameInAMixedFileCostsLikeAnEntry(t *testing.T) {
	c := chainOver(t, map[string]int{"fast": 5, "slow": slowCost})
	likeAnEntry := func(m []time.Duration) bool { return timingtest.Close(m[2], m[0]) || timingtest.Close(m[2], m[1]) }
	m, ok := timingtest.Measure(t, 5, likeAnEntry, refused(t, c, "fast"), refused(t, c, "slow"), refused(t, c, "mallory"))
	if !ok {
		t.Errorf("unknown name: median %v, neither like the cost 5 entry (%v) nor the cost %d one (%v)", m[2], m[0], slowCost, m[1])
	}
}

func TestDecoyCostsFollowTheFile(t *testing.T) {
	for _, cost := range []int{4, 5, 12, 31} {
		h := fmt.Appendf(nil, "$2a$%02d$%s", cost, standInHash)
		if got, err := bcrypt.Cost(h); got != cost || err != nil {
			t.Fatalf("stand-in of cost %d: cost %d, %v", cost, got, err)
		}
	}
	if err := bcrypt.CompareHashAndPassword(fmt.Appendf(nil, "$2a$04$%s", standInHash), []byte("pw")); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		t.Fatalf("stand-in checked: %v, want a mismatch after hashing", err)
	}

	// Three entries of cost 5 and one of cost 12: about a quarter of the
	// unknown names cost 12, and a name costs the same in every copy of the file.
	data := []byte("a:" + rightHash[5] + "\nb:" + rightHash[5] + "\nc:" + rightHash[12] + "\nd:" + rightHash[5] + "\n")
	users, err := Parse("users", data)
	if err != nil {
		t.Fatal(err)
	}
	one, other := newTable(users, data), newTable(users, data)
	slow := 0
	const names = 4000
	for i := range names {
		name := fmt.Sprintf("user%d", i)
		cost := one.decoyCost(name)
		if cost != 5 && cost != 12 || cost != other.decoyCost(name) {
			t.Fatalf("%s: cost %d, in another copy %d", name, cost, other.decoyCost(name))
		}
		if cost == 12 {
			slow++
		}
	}
	if share := float64(slow) / names; share < 0.2 || share > 0.3 {
		t.Fatalf("%.2f of unknown names cost 12, want about 0.25", share)
	}
	if cost := newTable(map[string][]byte{}, nil).decoyCost("x"); cost != 0 {
		t.Fatalf("empty file: decoy cost %d, want none", cost)
	}
}
