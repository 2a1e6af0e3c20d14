package ldap_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/identity/identitytest"
	tgldap "github.com/tollgate/tollgate/identity/ldap"
	"github.com/tollgate/tollgate/test/ldaptest"
	"github.com/tollgate/tollgate/test/timingtest"
)

const people = "ou=people," + ldaptest.Suffix
const groups = "ou=groups," + ldaptest.Suffix

// directory holds users and groups in the three shapes the connector reads:
// groupOfNames (with memberOf kept by the overlay, and one nested group) and
// posixGroup (memberUid).
const directory = `dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
mail: alice@example.org
departmentNumber: 42
userPassword: alice-pw

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: B
mail: bob@example.org
userPassword: bob-pw

dn: uid=twin1,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: twin1
cn: Twin One
sn: T
mail: twin@example.org
userPassword: twin-pw

dn: uid=twin2,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: twin2
cn: Twin Two
sn: T
mail: twin@example.org
userPassword: twin-pw

dn: cn=dev,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: dev
member: uid=alice,ou=people,dc=example,dc=org

dn: cn=platform,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: platform
member: cn=dev,ou=groups,dc=example,dc=org

dn: cn=ops,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: ops
gidNumber: 5000
memberUid: bob
`

func baseConfig(s *ldaptest.Server) tgldap.Config {
	return tgldap.Config{
		URL:             s.URL(),
		BindDN:          ldaptest.Reader,
		BindPassword:    ldaptest.ReaderPass,
		UserBase:        people,
		UserFilter:      "(&(objectClass=inetOrgPerson)(uid={user}))",
		ClaimAttributes: []string{"mail", "departmentNumber"},
		Groups:          tgldap.GroupConfig{From: "memberOf"},
		Timeout:         2 * time.Second,
		DialTimeout:     2 * time.Second,
	}
}

func connector(t testing.TB, cfg tgldap.Config) *tgldap.Connector {
	t.Helper()
	c, err := tgldap.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestLoginSearchesThenBinds(t *testing.T) {
	s := ldaptest.Start(t, "", directory)
	c := connector(t, baseConfig(s))
	ctx := context.Background()

	id, ok, err := c.Login(ctx, "alice", "alice-pw")
	if !ok || err != nil {
		t.Fatalf("alice: ok=%v err=%v", ok, err)
	}
	if id.Subject != "alice" || id.Name != "Alice Liddell" || !reflect.DeepEqual(id.Groups, []string{"dev"}) ||
		id.Claims["mail"] != "alice@example.org" || id.Claims["departmentNumber"] != "42" ||
		id.Claims["dn"] != "uid=alice,"+people {
		t.Fatalf("identity %+v", id)
	}

	cases := []struct {
		name, user, password string
		wantErr              error
	}{
		{"wrong password", "alice", "nope", nil},
		{"empty password is never bound", "alice", "", nil},
		{"unknown user", "mallory", "x", identity.ErrUnknownUser},
		{"filter wildcard", "*", "alice-pw", identity.ErrUnknownUser},
		{"filter injection", "alice)(uid=*", "alice-pw", identity.ErrUnknownUser},
		{"filter injection closing the and", "*)(objectClass=*", "alice-pw", identity.ErrUnknownUser},
		{"NUL byte", "alice\x00", "alice-pw", identity.ErrUnknownUser},
		{"prefix wildcard", "al*", "alice-pw", identity.ErrUnknownUser},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, ok, err := c.Login(ctx, tc.user, tc.password)
			if ok || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Login(%q) = ok %v, err %v; want false, %v", tc.user, ok, err, tc.wantErr)
			}
		})
	}
}

func TestLoginRefusesANameMatchingSeveralEntries(t *testing.T) {
	s := ldaptest.Start(t, "", directory)
	cfg := baseConfig(s)
	cfg.UserFilter = "(mail={user})"
	c := connector(t, cfg)
	if _, ok, err := c.Login(context.Background(), "twin@example.org", "twin-pw"); ok || err != nil {
		t.Fatalf("duplicate match: ok=%v err=%v, want refused", ok, err)
	}
	if id, ok, _ := c.Login(context.Background(), "alice@example.org", "alice-pw"); !ok || id.Subject != "alice" {
		t.Fatalf("login by mail: %+v %v", id, ok)
	}
}

// refused is a login of user with a wrong password through c, which must be refused.
func refused(t *testing.T, c *identity.Chain, user string) timingtest.Path {
	return timingtest.Path{Name: user, Run: func() {
		if _, ok, err := c.Login(context.Background(), user, "wrong-pw"); ok || err != nil {
			t.Fatalf("%s: ok=%v err=%v, want refused", user, ok, err)
		}
	}}
}

// An unknown name costs what a directory user's wrong password costs, so
// timing does not tell which names the directory holds. A login on loopback
// takes about a millisecond, and a shared machine's noise is of that order:
// many samples.
func TestUnknownUserCostsWhatAWrongPasswordCosts(t *testing.T) {
	s := ldaptest.Start(t, "", directory)
	c := identity.NewChain([]identity.Connector{identitytest.Connector(t, "corp", connector(t, baseConfig(s)))}, nil)
	timingtest.Alike(t, 101, refused(t, c, "alice"), refused(t, c, "mallory"))
}

// In a chain of LDAP and htpasswd, a wrong password of either's user and a
// name neither knows cost the same, in either order: the connectors after the
// one that refused spend what they would have spent on an unknown name.
// bcrypt's cheapest cost keeps the test short under the race detector.
func TestChainRefusalsCostTheSame(t *testing.T) {
	s := ldaptest.Start(t, "", directory)
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := htpasswd.Set(path, "carl", "carl-pw", 4); err != nil {
		t.Fatal(err)
	}
	file, err := htpasswd.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	corp := identitytest.Connector(t, "corp", connector(t, baseConfig(s)))
	local := identitytest.Connector(t, "local", file)
	for _, tc := range []struct {
		name  string
		order []identity.Connector
	}{{"ldap first", []identity.Connector{corp, local}}, {"htpasswd first", []identity.Connector{local, corp}}} {
		t.Run(tc.name, func(t *testing.T) {
			c := identity.NewChain(tc.order, nil)
			timingtest.Alike(t, 25, refused(t, c, "alice"), refused(t, c, "carl"), refused(t, c, "mallory"))
		})
	}
}

func TestGroupsBySearch(t *testing.T) {
	s := ldaptest.Start(t, "", directory)
	ctx := context.Background()

	posix := baseConfig(s)
	posix.Groups = tgldap.GroupConfig{From: "search", Base: groups, Filter: "(&(objectClass=posixGroup)(memberUid={user}))"}
	if id, ok, err := connector(t, posix).Login(ctx, "bob", "bob-pw"); !ok || err != nil || !reflect.DeepEqual(id.Groups, []string{"ops"}) {
		t.Fatalf("posixGroup: %+v %v %v", id, ok, err)
	}

	nested := baseConfig(s)
	nested.Groups = tgldap.GroupConfig{From: "search", Base: groups, Filter: "(&(objectClass=groupOfNames)(member={dn}))", Nested: true}
	if id, ok, err := connector(t, nested).Login(ctx, "alice", "alice-pw"); !ok || err != nil || !reflect.DeepEqual(id.Groups, []string{"dev", "platform"}) {
		t.Fatalf("nested groupOfNames: %+v %v %v", id, ok, err)
	}

	flat := nested
	flat.Groups.Nested = false
	if id, _, _ := connector(t, flat).Login(ctx, "alice", "alice-pw"); !reflect.DeepEqual(id.Groups, []string{"dev"}) {
		t.Fatalf("flat groupOfNames: %+v", id.Groups)
	}
}

func TestRefreshRechecksTheUserAndGroups(t *testing.T) {
	s := ldaptest.Start(t, "", directory)
	c := connector(t, baseConfig(s))
	ctx := context.Background()
	alice, _, _ := c.Login(ctx, "alice", "alice-pw")
	if id, ok, err := c.Refresh(ctx, alice); !ok || err != nil || !reflect.DeepEqual(id.Groups, []string{"dev"}) {
		t.Fatalf("refresh alice: %+v %v %v", id, ok, err)
	}
	// groupOfNames needs a member: add bob before removing alice.
	s.Modify("cn=dev,"+groups, "add", "member", "uid=bob,"+people)
	s.Modify("cn=dev,"+groups, "delete", "member", "uid=alice,"+people)
	if id, ok, _ := c.Refresh(ctx, alice); !ok || len(id.Groups) != 0 {
		t.Fatalf("refresh after leaving dev: %+v %v", id, ok)
	}
	s.Delete("uid=alice," + people)
	if _, ok, err := c.Refresh(ctx, alice); ok || err != nil {
		t.Fatalf("refresh of a deleted user: ok=%v err=%v", ok, err)
	}
	if _, ok, _ := c.Refresh(ctx, identity.Identity{Subject: "*"}); ok {
		t.Fatal("refresh with a wildcard subject succeeded")
	}
}

func TestOutageIsUnavailableAndRecovers(t *testing.T) {
	s := ldaptest.Start(t, "", directory)
	c := connector(t, baseConfig(s))
	ctx := context.Background()
	if _, ok, err := c.Login(ctx, "alice", "alice-pw"); !ok || err != nil {
		t.Fatalf("before the outage: %v %v", ok, err)
	}
	s.Stop()
	_, ok, err := c.Login(ctx, "alice", "alice-pw")
	if ok || !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("slapd down: ok=%v err=%v, want ErrUnavailable", ok, err)
	}
	if _, _, err := c.Login(ctx, "alice", "wrong"); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("slapd down, wrong password: %v, want ErrUnavailable (never a wrong-password answer)", err)
	}
	s.Restart()
	if _, ok, err := c.Login(ctx, "alice", "alice-pw"); !ok || err != nil {
		t.Fatalf("after recovery: ok=%v err=%v", ok, err)
	}
}

func TestTLS(t *testing.T) {
	s := ldaptest.Start(t, "", directory)
	ctx := context.Background()

	startTLS := baseConfig(s)
	startTLS.StartTLS, startTLS.CAFile = true, s.CAFile
	if _, ok, err := connector(t, startTLS).Login(ctx, "alice", "alice-pw"); !ok || err != nil {
		t.Fatalf("StartTLS: %v %v", ok, err)
	}

	ldaps := baseConfig(s)
	ldaps.URL, ldaps.CAFile = s.TLSURL(), s.CAFile
	if _, ok, err := connector(t, ldaps).Login(ctx, "alice", "alice-pw"); !ok || err != nil {
		t.Fatalf("LDAPS: %v %v", ok, err)
	}

	untrusted := baseConfig(s)
	untrusted.URL = s.TLSURL() // no CA: the test CA is not trusted
	if _, ok, err := connector(t, untrusted).Login(ctx, "alice", "alice-pw"); ok || !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("LDAPS with an untrusted certificate: ok=%v err=%v", ok, err)
	}

	if _, err := tgldap.New(tgldap.Config{URL: s.TLSURL(), StartTLS: true, UserBase: people, UserFilter: "(uid={user})"}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("StartTLS on ldaps:// accepted")
	}
}

func TestClientCertificate(t *testing.T) {
	s := ldaptest.StartWith(t, "", directory, ldaptest.Options{RequireClientCert: true})
	ctx := context.Background()
	cfg := baseConfig(s)
	cfg.URL, cfg.CAFile = s.TLSURL(), s.CAFile
	if _, ok, err := connector(t, cfg).Login(ctx, "alice", "alice-pw"); ok || !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("without a client certificate: ok=%v err=%v, want the TLS handshake refused", ok, err)
	}
	cfg.ClientCertFile, cfg.ClientKeyFile = s.ClientCertFile, s.ClientKeyFile
	if _, ok, err := connector(t, cfg).Login(ctx, "alice", "alice-pw"); !ok || err != nil {
		t.Fatalf("with the client certificate: ok=%v err=%v", ok, err)
	}
}

// adSchema gives slapd the Active Directory attributes the connector is
// configured with, so an AD-shaped directory is tested by configuration only.
const adSchema = `attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
	EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
	EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.55555.1.1 NAME 'adUser' AUXILIARY
	MAY ( sAMAccountName $ userPrincipalName ) )
`

const adDirectory = `dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: cn=Carol Danvers,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: adUser
cn: Carol Danvers
sn: Danvers
sAMAccountName: cdanvers
userPrincipalName: cdanvers@corp.example.org
userPassword: carol-pw

dn: cn=Registry Developers,ou=people,dc=example,dc=org
objectClass: groupOfNames
cn: Registry Developers
member: cn=Carol Danvers,ou=people,dc=example,dc=org
`

func TestActiveDirectoryShapeByConfigurationOnly(t *testing.T) {
	s := ldaptest.Start(t, adSchema, adDirectory)
	cfg := baseConfig(s)
	cfg.UserFilter = "(&(objectClass=adUser)(|(sAMAccountName={user})(userPrincipalName={user})))"
	cfg.SubjectAttribute = "sAMAccountName"
	cfg.ClaimAttributes = []string{"userPrincipalName"}
	c := connector(t, cfg)
	ctx := context.Background()
	var carol identity.Identity
	for _, login := range []string{"cdanvers", "cdanvers@corp.example.org"} {
		id, ok, err := c.Login(ctx, login, "carol-pw")
		carol = id
		if !ok || err != nil || id.Subject != "cdanvers" || id.Name != "Carol Danvers" ||
			!reflect.DeepEqual(id.Groups, []string{"Registry Developers"}) || id.Claims["userPrincipalName"] != "cdanvers@corp.example.org" {
			t.Fatalf("AD login as %q: %+v %v %v", login, id, ok, err)
		}
	}
	if _, ok, _ := c.Refresh(ctx, carol); !ok {
		t.Fatal("AD refresh by sAMAccountName failed")
	}
}

func TestConfigValidation(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	good := tgldap.Config{URL: "ldap://localhost:389", UserBase: people, UserFilter: "(uid={user})"}
	for name, mutate := range map[string]func(*tgldap.Config){
		"bad scheme":          func(c *tgldap.Config) { c.URL = "http://x" },
		"no base":             func(c *tgldap.Config) { c.UserBase = "" },
		"filter without user": func(c *tgldap.Config) { c.UserFilter = "(uid=alice)" },
		"unbalanced filter":   func(c *tgldap.Config) { c.UserFilter = "(uid={user}" },
		"unknown groups.from": func(c *tgldap.Config) { c.Groups.From = "magic" },
		"search without base": func(c *tgldap.Config) { c.Groups = tgldap.GroupConfig{From: "search", Filter: "(member={dn})"} },
		"missing CA file":     func(c *tgldap.Config) { c.CAFile = "/nonexistent/ca.pem" },
		"bad group filter": func(c *tgldap.Config) {
			c.Groups = tgldap.GroupConfig{From: "search", Base: groups, Filter: "member={dn}))"}
		},
	} {
		cfg := good
		mutate(&cfg)
		if _, err := tgldap.New(cfg, log); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := tgldap.New(good, log); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
}

// BenchmarkLogin measures logins per second against a real slapd, with and
// without the broker's credential cache in front.
func BenchmarkLogin(b *testing.B) {
	s := ldaptest.Start(b, "", directory)
	for _, cached := range []bool{false, true} {
		name := "uncached"
		var cache *identity.CredentialCache
		if cached {
			name, cache = "cached", identity.NewCredentialCache(100, time.Minute)
		}
		b.Run(name, func(b *testing.B) {
			chain := identity.NewChain([]identity.Connector{identitytest.Connector(b, "corp", connector(b, baseConfig(s)))}, cache)
			ctx := context.Background()
			for b.Loop() {
				if _, ok, err := chain.Login(ctx, "alice", "alice-pw"); !ok || err != nil {
					b.Fatalf("login: %v %v", ok, err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
		})
	}
}

// A refresh ends once the credential it was issued for is gone: the
// password changed (pwdChangedTime, kept by a password policy) or the
// entry was deleted and created again under the same name (entryUUID).
// Other changes to the entry leave it alone.
func TestRefreshFailsOnceThePasswordOrTheEntryChanged(t *testing.T) {
	s := ldaptest.StartWith(t, "", directory, ldaptest.Options{PasswordPolicy: true})
	c := connector(t, baseConfig(s))
	ctx := context.Background()
	alice := "uid=alice," + people
	var rejected *identity.RejectedError

	id, ok, err := c.Login(ctx, "alice", "alice-pw")
	if !ok || err != nil {
		t.Fatalf("login: %v %v", ok, err)
	}
	s.Modify(alice, "replace", "mail", "alice@example.net")
	if _, ok, err := c.Refresh(ctx, id); !ok || err != nil {
		t.Fatalf("refresh after a change of mail: ok=%v err=%v", ok, err)
	}
	s.Modify(alice, "replace", "userPassword", "alice-new-pw")
	if _, ok, err := c.Refresh(ctx, id); ok || !errors.As(err, &rejected) || !strings.Contains(rejected.Reason, "credential changed") {
		t.Fatalf("refresh after a password change: ok=%v err=%v, want a RejectedError saying the credential changed", ok, err)
	}

	id, ok, err = c.Login(ctx, "alice", "alice-new-pw")
	if !ok || err != nil {
		t.Fatalf("login with the new password: %v %v", ok, err)
	}
	if _, ok, err := c.Refresh(ctx, id); !ok || err != nil {
		t.Fatalf("refresh after logging in again: ok=%v err=%v", ok, err)
	}
	s.Delete(alice)
	s.Add(`dn: ` + alice + `
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
userPassword: alice-new-pw`)
	if _, ok, err := c.Refresh(ctx, id); ok || !errors.As(err, &rejected) || !strings.Contains(rejected.Reason, "credential changed") {
		t.Fatalf("refresh after the entry was created again: ok=%v err=%v, want a RejectedError saying the credential changed", ok, err)
	}
}
