package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/ldaptest"
)

// ldapDirectory: erin and gina are in the group registry-dev, which the
// policy maps to developer in team; frank is in no group.
const ldapDirectory = `dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=erin,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: erin
cn: Erin
sn: E
userPassword: erin-ldap-pw

dn: uid=frank,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: frank
cn: Frank
sn: F
userPassword: frank-ldap-pw

dn: uid=gina,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: gina
cn: Gina
sn: G
userPassword: gina-ldap-pw

dn: cn=registry-dev,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: registry-dev
member: uid=erin,ou=people,dc=example,dc=org
member: uid=gina,ou=people,dc=example,dc=org
`

const ldapPolicyData = `{"registry": {
  "system_admins": {"users": [], "groups": []},
  "projects": {"team": {"public": false, "members": {}, "groups": {"registry-dev": "developer"}}}
}}`

// ldapIdentity is the `corp` connector against the test directory at url,
// bound as ldaptest.Reader (its password in TOLLGATE_E2E_LDAP_BIND), with
// timeout for both dialling and each operation.
func ldapIdentity(url, timeout string) string {
	return fmt.Sprintf(`  - name: corp
    type: ldap
    url: %q
    bind_dn: %q
    bind_password_env: TOLLGATE_E2E_LDAP_BIND
    user_base: "ou=people,dc=example,dc=org"
    user_filter: "(uid={user})"
    groups: {from: memberOf}
    timeout: %s
    dial_timeout: %s
`, url, ldaptest.Reader, timeout, timeout)
}

// TestLDAPGroupDecidesPush runs the whole path with a real slapd: an LDAP
// user whose group the policy maps to developer pushes with crane, a user
// outside the group cannot, removing the membership in slapd takes push
// away once the caches expire, and slapd going down answers 503 until it is
// back.
func TestLDAPGroupDecidesPush(t *testing.T) {
	dir := ldaptest.Start(t, "", ldapDirectory)
	r := flavors[1]
	tool(t, r.bin)
	b := startBrokerWith(t, brokerOptions{
		identity: ldapIdentity(dir.URL(), "2s"),
		// Short caches, so a membership change shows within seconds.
		extra:       "credential_cache: {size: 100, ttl: 1s}\n",
		policyData:  ldapPolicyData,
		env:         []string{"TOLLGATE_E2E_LDAP_BIND=" + ldaptest.ReaderPass},
		decisionTTL: "1s",
	})
	reg := startRegistry(t, r, b)
	b.passwords["erin"], b.passwords["frank"] = "erin-ldap-pw", "frank-ldap-pw"

	erin, frank := newClient(t), newClient(t)
	erin.login("crane", reg, b, "erin")
	frank.login("crane", reg, b, "frank")
	erin.must("crane", "append", "-f", erin.layerTar(), "-t", reg.host()+"/team/app:erin")
	frank.mustFail(1, craneDenied, "crane", "append", "-f", frank.layerTar(), "-t", reg.host()+"/team/app:frank")

	// erin leaves the group: within the cache lifetimes, push goes away.
	dir.Modify("cn=registry-dev,ou=groups,dc=example,dc=org", "delete", "member", "uid=erin,ou=people,dc=example,dc=org")
	deadline := time.Now().Add(15 * time.Second)
	for {
		res := erin.run("crane", "append", "-f", erin.layerTar(), "-t", reg.host()+"/team/app:erin2")
		if res.code != 0 && craneDenied.MatchString(res.out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("erin can still push after leaving the group:\n%s", res)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The directory goes down: 503 (never 401, which would read as a wrong
	// password), then service again when it is back.
	dir.Stop()
	time.Sleep(1100 * time.Millisecond) // let the credential cache forget gina
	b.passwords["gina"] = "gina-ldap-pw"
	// More attempts than the throttle's per-user limit (10): an outage is
	// never a failed login, so nobody is locked out by it.
	for i := range 15 {
		if status := tokenStatus(t, b, "gina"); status != http.StatusServiceUnavailable {
			t.Fatalf("slapd down, attempt %d: token status %d, want 503", i, status)
		}
	}
	dir.Restart()
	if status := tokenStatus(t, b, "gina"); status != http.StatusOK {
		t.Fatalf("slapd back: token status %d, want 200", status)
	}
}

// tokenStatus asks for a login token and returns the HTTP status only.
func tokenStatus(t *testing.T, b *broker, user string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.url("/token?scope=repository:team/app:pull"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, b.passwords[user])
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
