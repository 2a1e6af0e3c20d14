// Package ldap is the identity adapter for LDAP and Active Directory:
// search the user with a service account, then bind as the user.
package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/probe"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// Config configures one LDAP connector; zero values take the defaults named.
type Config struct {
	// URL is ldap://host:port or ldaps://host:port.
	URL string `yaml:"url"`
	// StartTLS upgrades an ldap:// connection before any bind.
	StartTLS bool `yaml:"start_tls"`
	// CAFile verifies the server certificate; the system roots otherwise.
	CAFile string `yaml:"ca_file"`
	// ClientCertFile and ClientKeyFile present a client certificate.
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// InsecureSkipVerify turns off certificate verification. Loudly logged.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`

	// BindDN and BindPassword are the service account that searches. The
	// password is given as the value, or read by Open from the environment
	// variable BindPasswordEnv or the file BindPasswordFile.
	BindDN           string        `yaml:"bind_dn"`
	BindPassword     secret.Secret `yaml:"bind_password"`
	BindPasswordEnv  string        `yaml:"bind_password_env"`
	BindPasswordFile string        `yaml:"bind_password_file"`

	// UserBase and UserFilter find the user; {user} in the filter is
	// replaced by the escaped login name, e.g. (uid={user}) or
	// (sAMAccountName={user}).
	UserBase   string `yaml:"user_base"`
	UserFilter string `yaml:"user_filter"`
	// SubjectAttribute becomes Identity.Subject (default uid); NameAttribute
	// the display name (default cn). ClaimAttributes go into Identity.Claims.
	SubjectAttribute string   `yaml:"subject_attribute"`
	NameAttribute    string   `yaml:"name_attribute"`
	ClaimAttributes  []string `yaml:"claim_attributes"`

	// Groups says where group names come from.
	Groups GroupConfig `yaml:"groups"`

	// PoolSize bounds the bound service connections kept open (default 4).
	PoolSize int `yaml:"pool_size"`
	// DialTimeout and Timeout bound connecting and each request (default 5s).
	DialTimeout time.Duration `yaml:"dial_timeout"`
	Timeout     time.Duration `yaml:"timeout"`

	// Probe records each search and bind: its latency, and whether the
	// directory answered. Open sets it from identity.Env.Probe.
	Probe probe.Recorder `yaml:"-"`
}

// GroupConfig configures group lookup.
type GroupConfig struct {
	// From is "memberOf" (read the user's memberOf attribute), "search"
	// (search groups with Filter), or "" for no groups.
	From string `yaml:"from"`
	// Base and Filter find groups for From: search. {dn} is the escaped user
	// DN and {user} the escaped subject, e.g. (member={dn}), (memberUid={user}),
	// or AD's nested (member:1.2.840.113556.1.4.1941:={dn}).
	Base   string `yaml:"base"`
	Filter string `yaml:"filter"`
	// NameAttribute is the group attribute (or DN component) used as the
	// group name; cn by default.
	NameAttribute string `yaml:"name_attribute"`
	// Nested follows groups of groups by search (member={group dn}), at most
	// MaxDepth levels (default 5).
	Nested   bool `yaml:"nested"`
	MaxDepth int  `yaml:"max_depth"`
}

// A changed signature fails the build here, not silently in the chain.
var (
	_ identity.PasswordConnector = (*Connector)(nil)
	_ identity.RefreshConnector  = (*Connector)(nil)
	_ identity.Decoy             = (*Connector)(nil)
)

// Connector implements identity.PasswordConnector and RefreshConnector.
type Connector struct {
	cfg  Config
	tls  *tls.Config
	pool chan *ldap.Conn
	log  *slog.Logger
	// decoyDN names no entry: decoyBind binds as it (see there).
	decoyDN  string
	refusals refusals
}

// New validates cfg and returns a connector. It does not connect: a
// directory that is down at start makes logins fail with 503 until it is back.
func New(cfg Config, log *slog.Logger) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)
	if cfg.SubjectAttribute == "" {
		cfg.SubjectAttribute = "uid"
	}
	if cfg.NameAttribute == "" {
		cfg.NameAttribute = "cn"
	}
	if cfg.Groups.NameAttribute == "" {
		cfg.Groups.NameAttribute = "cn"
	}
	if cfg.Groups.MaxDepth <= 0 {
		cfg.Groups.MaxDepth = 5
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 4
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	tc := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.InsecureSkipVerify {
		log.Warn("LDAP TLS certificate verification is OFF (insecure_skip_verify): anyone on the path can read passwords", "url", cfg.URL)
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, yamlconf.Prefix("ca_file", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, yamlconf.Errorf("ca_file", "%s: no PEM certificates", cfg.CAFile)
		}
	}
	if cfg.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientCertFile, cfg.ClientKeyFile)
		if err != nil {
			return nil, yamlconf.Prefix("client_cert_file", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return &Connector{cfg: cfg, tls: tc, pool: make(chan *ldap.Conn, cfg.PoolSize), log: log,
		decoyDN: decoyDN(cfg.UserBase)}, nil
}

// unavailableError is a directory that did not answer: the broker answers
// 503, and the probe counts a failure.
type unavailableError struct {
	what string
	err  error
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("ldap %s: %v: %v", e.what, identity.ErrUnavailable, e.err)
}

// Is makes it identity.ErrUnavailable; the transport error itself is not
// unwrapped, so no caller mistakes it for an answer of the directory.
func (e *unavailableError) Is(target error) bool { return target == identity.ErrUnavailable }

// failure is the directory's failure in err, for the probe: nil when the
// directory answered (refusals included); a timeout of go-ldap (a plain
// error) made a context.DeadlineExceeded.
func failure(err error) error {
	var ue *unavailableError
	if !errors.As(err, &ue) {
		return nil
	}
	if strings.Contains(ue.err.Error(), "ldap: connection timed out") {
		return fmt.Errorf("%w: %v", context.DeadlineExceeded, ue.err)
	}
	return ue.err
}

// dial opens a connection, upgraded to TLS when configured.
func (c *Connector) dial(ctx context.Context) (*ldap.Conn, error) {
	d := &net.Dialer{Timeout: c.cfg.DialTimeout}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	conn, err := ldap.DialURL(c.cfg.URL, ldap.DialWithDialer(d), ldap.DialWithTLSConfig(c.tls))
	if err != nil {
		return nil, err
	}
	conn.SetTimeout(c.timeout(ctx))
	if c.cfg.StartTLS {
		if err := conn.StartTLS(c.tls); err != nil {
			conn.Close()
			return nil, fmt.Errorf("StartTLS: %w", err)
		}
	}
	return conn, nil
}

func (c *Connector) timeout(ctx context.Context) time.Duration {
	t := c.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < t {
			t = max(left, time.Millisecond)
		}
	}
	return t
}

// service returns a connection bound as the service account, from the pool
// when one is idle. Callers give it back with release.
func (c *Connector) service(ctx context.Context) (*ldap.Conn, error) {
	for {
		select {
		case conn := <-c.pool:
			if conn.IsClosing() {
				conn.Close()
				continue
			}
			conn.SetTimeout(c.timeout(ctx))
			return conn, nil
		default:
		}
		break
	}
	return c.dialService(ctx)
}

// dialService opens a new connection bound as the service account.
func (c *Connector) dialService(ctx context.Context) (*ldap.Conn, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	if c.cfg.BindDN != "" {
		if err := conn.Bind(c.cfg.BindDN, string(c.cfg.BindPassword)); err != nil {
			conn.Close()
			return nil, fmt.Errorf("service bind as %s: %w", c.cfg.BindDN, err)
		}
	}
	return conn, nil
}

// check is the directory's health check (see probe.Watch): a new
// connection bound as the service account, the first step of every
// login (an anonymous one only connects). Not from the pool, whose idle
// connections say nothing of the directory now; closed after, so no
// connection outlives the connector.
func (c *Connector) check(ctx context.Context) {
	done := probe.Start(c.cfg.Probe)
	conn, err := c.dialService(ctx)
	if err != nil {
		err = &unavailableError{"connect", err}
	} else {
		conn.Close()
	}
	done(ctx, failure(err))
}

// release returns a healthy connection to the pool and closes a broken one.
func (c *Connector) release(conn *ldap.Conn, err error) {
	if err != nil && !isLDAPResult(err) {
		conn.Close()
		return
	}
	select {
	case c.pool <- conn:
	default:
		conn.Close()
	}
}

// isLDAPResult tells an answer of the server (no such object, size limit)
// from a transport failure, which leaves the connection unusable.
func isLDAPResult(err error) bool {
	var le *ldap.Error
	return errors.As(err, &le) && le.ResultCode != ldap.ErrorNetwork && le.ResultCode < 200
}

// search runs one search on a service connection. A transport failure is
// retried once on a fresh connection, because a pooled one may have gone
// stale; a second failure means the directory is unavailable.
func (c *Connector) search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	done := probe.Start(c.cfg.Probe)
	res, err := c.searchOnce(ctx, req)
	done(ctx, failure(err))
	return res, err
}

func (c *Connector) searchOnce(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	var lastErr error
	for range 2 {
		conn, err := c.service(ctx)
		if err != nil {
			return nil, &unavailableError{"connect", err}
		}
		res, err := conn.Search(req)
		c.release(conn, err)
		switch {
		case err == nil, ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
			return res, nil // with a size limit, the entries so far say enough
		case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
			return &ldap.SearchResult{}, nil
		case isLDAPResult(err):
			return nil, fmt.Errorf("ldap search: %w", err)
		}
		lastErr = err
	}
	return nil, &unavailableError{"search", lastErr}
}

// findUser searches the one entry matching filter. found=false means no entry.
func (c *Connector) findUser(ctx context.Context, filter string) (*ldap.Entry, bool, error) {
	attrs := append([]string{c.cfg.SubjectAttribute, c.cfg.NameAttribute}, credentialAttributes...)
	if c.cfg.Groups.From == "memberOf" {
		attrs = append(attrs, "memberOf")
	}
	attrs = append(attrs, c.cfg.ClaimAttributes...)
	res, err := c.search(ctx, ldap.NewSearchRequest(c.cfg.UserBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, 0, false, filter, attrs, nil))
	if err != nil {
		return nil, false, err
	}
	switch len(res.Entries) {
	case 0:
		return nil, false, nil
	case 1:
		return res.Entries[0], true, nil
	}
	return nil, false, errDuplicate
}

var errDuplicate = errors.New("more than one directory entry matches")

// Login implements identity.PasswordConnector.
func (c *Connector) Login(ctx context.Context, user, password string) (identity.Identity, bool, error) {
	if err := ctx.Err(); err != nil {
		return identity.Identity{}, false, err // nobody waits for the answer
	}
	// An empty password makes an LDAP bind "unauthenticated" and it succeeds:
	// refuse it before talking to the server at all.
	if password == "" || user == "" {
		return identity.Identity{}, false, nil
	}
	start := time.Now()
	filter := c.userFilter(user)
	entry, found, err := c.findUser(ctx, filter)
	if errors.Is(err, errDuplicate) {
		c.log.Warn("LDAP login refused: the user name matches several entries", "filter", filter)
		return identity.Identity{}, false, c.decoyBind(ctx, start, password)
	}
	if err != nil {
		return identity.Identity{}, false, err
	}
	if !found {
		if err := c.decoyBind(ctx, start, password); err != nil {
			return identity.Identity{}, false, err
		}
		return identity.Identity{}, false, identity.ErrUnknownUser
	}
	ok, err := c.bind(ctx, entry.DN, password)
	if err != nil || !ok {
		if err == nil {
			c.refusals.add(true, time.Since(start))
		}
		return identity.Identity{}, false, err
	}
	return c.identity(ctx, entry)
}

func (c *Connector) userFilter(user string) string {
	return strings.ReplaceAll(c.cfg.UserFilter, "{user}", ldap.EscapeFilter(user))
}

// bind checks password by binding as dn on a connection of its own, so
// pooled connections stay bound as the service account. ok=false with a nil
// error is a refusal.
func (c *Connector) bind(ctx context.Context, dn, password string) (bool, error) {
	done := probe.Start(c.cfg.Probe)
	ok, err := c.bindOnce(ctx, dn, password)
	done(ctx, failure(err))
	return ok, err
}

func (c *Connector) bindOnce(ctx context.Context, dn, password string) (bool, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return false, &unavailableError{"connect", err}
	}
	err = conn.Bind(dn, password)
	conn.Close()
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials):
		return false, nil
	case err != nil && isLDAPResult(err):
		// Locked, expired or otherwise refused by the server: not a login.
		c.log.Info("LDAP bind refused", "dn", dn, "err", err)
		return false, nil
	case err != nil:
		return false, &unavailableError{"bind", err}
	}
	return true, nil
}

// Refresh implements identity.RefreshConnector: the user must still exist,
// with the credential the refresh token was issued for (see
// credentialAttributes for what the directory lets us see of it).
func (c *Connector) Refresh(ctx context.Context, prev identity.Identity) (identity.Identity, bool, error) {
	if err := ctx.Err(); err != nil {
		return identity.Identity{}, false, err
	}
	if prev.Subject == "" {
		return identity.Identity{}, false, nil
	}
	filter := fmt.Sprintf("(%s=%s)", c.cfg.SubjectAttribute, ldap.EscapeFilter(prev.Subject))
	entry, found, err := c.findUser(ctx, filter)
	if errors.Is(err, errDuplicate) || (err == nil && !found) {
		return identity.Identity{}, false, nil
	}
	if err != nil {
		return identity.Identity{}, false, err
	}
	if err := identity.CheckCredential(ctx, prev, credential(entry)); err != nil {
		return identity.Identity{}, false, err
	}
	return c.identity(ctx, entry)
}

// credentialAttributes are the operational attributes that change with a
// user's credential. The entry's unique id (entryUUID: RFC 4530, OpenLDAP,
// 389-ds; objectGUID: Active Directory; nsUniqueId: 389-ds) tells an entry
// deleted and created again under the same name; the time of the last
// password change (pwdChangedTime: the password policy overlay of OpenLDAP,
// 389-ds; pwdLastSet: Active Directory) tells a new password. Without a
// password policy OpenLDAP records no such time, and a password change is
// not seen. modifyTimestamp and entryCSN would see it, but they change with
// every attribute (a group joined, a display name): too broad.
var credentialAttributes = []string{"entryUUID", "objectGUID", "nsUniqueId", "pwdChangedTime", "pwdLastSet"}

// credential fingerprints what the directory shows of e's credential: ids
// and times, nothing of the password. A directory that shows none of them
// to the service account gives every user one unchanging fingerprint.
func credential(e *ldap.Entry) string {
	var parts [][]byte
	for _, a := range credentialAttributes {
		for _, v := range e.GetEqualFoldRawAttributeValues(a) {
			parts = append(parts, []byte(a), v)
		}
	}
	return identity.Fingerprint(parts...)
}

func (c *Connector) identity(ctx context.Context, e *ldap.Entry) (identity.Identity, bool, error) {
	id := identity.Identity{
		Subject:    e.GetEqualFoldAttributeValue(c.cfg.SubjectAttribute),
		Name:       e.GetEqualFoldAttributeValue(c.cfg.NameAttribute),
		Groups:     []string{},
		Claims:     map[string]any{"dn": e.DN},
		Credential: credential(e),
	}
	if id.Subject == "" {
		return identity.Identity{}, false, fmt.Errorf("ldap entry %s has no %s attribute", e.DN, c.cfg.SubjectAttribute)
	}
	for _, a := range c.cfg.ClaimAttributes {
		switch vals := e.GetEqualFoldAttributeValues(a); len(vals) {
		case 0:
		case 1:
			id.Claims[a] = vals[0]
		default:
			id.Claims[a] = vals
		}
	}
	groups, err := c.groups(ctx, e, id.Subject)
	if err != nil {
		return identity.Identity{}, false, err
	}
	id.Groups = groups
	return id, true, nil
}

func (c *Connector) groups(ctx context.Context, e *ldap.Entry, subject string) ([]string, error) {
	g := c.cfg.Groups
	var dns []string
	switch g.From {
	case "":
		return []string{}, nil
	case "memberOf":
		dns = e.GetEqualFoldAttributeValues("memberOf")
	case "search":
		filter := strings.NewReplacer("{dn}", ldap.EscapeFilter(e.DN), "{user}", ldap.EscapeFilter(subject)).Replace(g.Filter)
		found, err := c.groupSearch(ctx, filter)
		if err != nil {
			return nil, err
		}
		dns = found
	}
	if g.Nested {
		seen := map[string]bool{}
		frontier := dns
		for depth := 0; depth < g.MaxDepth && len(frontier) > 0; depth++ {
			var next []string
			for _, dn := range frontier {
				if seen[strings.ToLower(dn)] {
					continue
				}
				seen[strings.ToLower(dn)] = true
				parents, err := c.groupSearch(ctx, fmt.Sprintf("(member=%s)", ldap.EscapeFilter(dn)))
				if err != nil {
					return nil, err
				}
				next = append(next, parents...)
			}
			dns = append(dns, next...)
			frontier = next
		}
	}
	names := []string{}
	for _, dn := range dns {
		if n := rdnValue(dn, g.NameAttribute); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// groupSearch returns the DNs of the groups matching filter under the group base.
func (c *Connector) groupSearch(ctx context.Context, filter string) ([]string, error) {
	base := c.cfg.Groups.Base
	if base == "" {
		base = c.cfg.UserBase
	}
	res, err := c.search(ctx, ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		1000, 0, false, filter, []string{"dn"}, nil))
	if err != nil {
		return nil, err
	}
	dns := make([]string, 0, len(res.Entries))
	for _, e := range res.Entries {
		dns = append(dns, e.DN)
	}
	return dns, nil
}

// rdnValue returns the value of attr in the first RDN of dn ("cn=dev,ou=groups" -> "dev").
func rdnValue(dn, attr string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 {
		return ""
	}
	for _, a := range parsed.RDNs[0].Attributes {
		if strings.EqualFold(a.Type, attr) {
			return a.Value
		}
	}
	return ""
}

// Close closes the pooled connections.
func (c *Connector) Close() {
	for {
		select {
		case conn := <-c.pool:
			conn.Close()
		default:
			return
		}
	}
}
