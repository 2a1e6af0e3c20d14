package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A group in an htpasswd connector's groups file grants push through the
// project's groups; taking the user out of the group revokes it as soon as
// the broker has reloaded the file, with no restart and no signal.
func TestHtpasswdGroupsFileGrantsAndRevokesAfterReload(t *testing.T) {
	dir := t.TempDir()
	users, groups := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "groups")
	tollgate(t, "hana-pw\n", "htpasswd", "add", "--cost", "4", users, "hana")
	if err := os.WriteFile(groups, []byte("# Apache AuthGroupFile\npushers: hana\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := strings.Replace(testPolicyData, `"bob": "guest"}, "groups": {}`, `"bob": "guest"}, "groups": {"pushers": "developer"}`, 1)
	if data == testPolicyData {
		t.Fatal("test data changed shape: the group was not added")
	}
	b := startBrokerWith(t, brokerOptions{
		policyData: data,
		identity:   fmt.Sprintf("  - {name: team, type: htpasswd, file: %q, groups_file: %q}\n", users, groups),
	})
	b.passwords["hana"] = "hana-pw"
	actions := func() []string {
		t.Helper()
		var got []string
		for _, a := range decodeToken(t, b.getToken(t, flavors[0].service, "hana", "repository:team/app:pull,push")).Access {
			got = append(got, a.Actions...)
		}
		slices.Sort(got)
		return got
	}
	if got := actions(); !slices.Equal(got, []string{"pull", "push"}) {
		t.Fatalf("hana in pushers: actions %v, want pull and push", got)
	}

	if err := os.WriteFile(groups, []byte("pushers:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the groups file to be reloaded", func() bool { return len(actions()) == 0 })
	if log := b.proc.tail(); !strings.Contains(log, "htpasswd groups reloaded") {
		t.Errorf("the log does not say the groups were reloaded:\n%s", log)
	}
}
