package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/broker"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check that a registry and the broker agree, and that clients can reach the realm",
		Description: `Reads the broker configuration and a registry's config.yml and checks: the
registry's service is one the broker serves; the issuers match; the registry's
rootcertbundle (or jwks file) holds the key that signs now and the keys that
will; the realm answers like a token endpoint; and current clients will accept
the realm's host (crane and oras refuse realms on private or loopback
addresses unless they are on the registry's own host). Every problem comes
with its fix. Exit status 1 when any check finds a problem.

Examples:
   tollgate doctor --config /etc/tollgate/config.yaml --registry-config /etc/docker/registry/config.yml
   tollgate doctor --registry-config .tollgate/registry.yml --registry-url http://localhost:5000`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "broker configuration file (default: the development state in --state-dir)", EnvVars: []string{"TOLLGATE_CONFIG"}},
			&cli.StringFlag{Name: "state-dir", Value: ".tollgate", Usage: "development mode state directory"},
			&cli.StringFlag{Name: "registry-config", Required: true, Usage: "the registry's config.yml"},
			&cli.StringFlag{Name: "registry-url", Usage: "how clients address the registry (default: its http.host, else http.addr)"},
		},
		Action: func(c *cli.Context) error {
			cfg, _, err := loadOrDevConfig(c)
			if err != nil {
				return err
			}
			services, err := cfg.LoadServices()
			if err != nil {
				return err
			}
			rc, err := readRegistryConfig(c.String("registry-config"))
			if err != nil {
				return err
			}
			fs := doctor(c.Context, services, rc, c.String("registry-url"), time.Now())
			printFindings(c.App.Writer, fs)
			n := 0
			for _, f := range fs {
				if f.Level == "problem" {
					n++
				}
			}
			if n > 0 {
				return cli.Exit(fmt.Sprintf("%d problem(s) found", n), exitProblems)
			}
			return nil
		},
	}
}

type findings []broker.Finding

func (fs *findings) ok(check, format string, args ...any) {
	*fs = append(*fs, broker.Finding{Level: "ok", Check: check, Message: fmt.Sprintf(format, args...)})
}

func (fs *findings) problem(check, format string, args ...any) {
	*fs = append(*fs, broker.Finding{Level: "problem", Check: check, Message: fmt.Sprintf(format, args...)})
}

// doctor runs every check of `tollgate doctor`.
func doctor(ctx context.Context, services []*broker.Service, rc *registryAuth, registryURL string, now time.Time) []broker.Finding {
	var fs findings
	var svc *broker.Service
	var names []string
	for _, s := range services {
		names = append(names, s.Name)
		if s.Name == rc.Service {
			svc = s
		}
	}
	if svc == nil {
		fs.problem("service", "the registry's service %q is not one the broker serves (%s): set auth.token.service to one of them, or add it to the broker's services", rc.Service, strings.Join(names, ", "))
		return fs
	}
	fs.ok("service", "the broker serves %q", svc.Name)

	if rc.Issuer == svc.Issuer {
		fs.ok("issuer", "issuers match (%q)", svc.Issuer)
	} else {
		fs.problem("issuer", "the registry expects issuer %q but the broker signs %q for this service: set auth.token.issuer: %s in the registry's config (or services[].issuer in the broker's) and restart the registry", rc.Issuer, svc.Issuer, svc.Issuer)
	}

	doctorKeys(&fs, svc, rc, now)
	doctorRealm(ctx, &fs, svc, rc, registryURL)
	return fs
}

// doctorKeys checks that the registry trusts the signing key and the keys
// scheduled to sign.
func doctorKeys(fs *findings, svc *broker.Service, rc *registryAuth, now time.Time) {
	fix := fmt.Sprintf("run `tollgate registry-config --service %s --bundle %s` and restart the registry", svc.Name, cmp.Or(rc.RootCertBundle, "PATH"))
	signer := svc.Keys.Signer(now)
	if signer == nil {
		fs.problem("keys", "the broker has no key valid for signing for %s: run `tollgate keygen`", svc.Name)
		return
	}
	switch {
	case rc.RootCertBundle != "":
		data, err := os.ReadFile(rc.RootCertBundle)
		if err != nil {
			fs.problem("rootcertbundle", "cannot read the registry's rootcertbundle: %v; %s", err, fix)
			return
		}
		trusted := map[string]bool{}
		for rest := data; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
				trusted[string(cert.Raw)] = true
			}
		}
		if !trusted[string(signer.Cert.Raw)] {
			fs.problem("rootcertbundle", "%s does not hold the certificate of the key that signs now (kid %s): the registry refuses every token; %s", rc.RootCertBundle, signer.ID, fix)
			return
		}
		fs.ok("rootcertbundle", "the registry trusts the key that signs now (kid %s)", signer.ID)
		for _, k := range svc.Keys.Published(now) {
			if !trusted[string(k.Cert.Raw)] && k.Cert.NotBefore.After(now) {
				fs.problem("rootcertbundle", "the key that starts signing at %s (kid %s) is not in %s yet: tokens will be refused from then on; %s", k.Cert.NotBefore.UTC().Format(time.RFC3339), k.ID, rc.RootCertBundle, fix)
			}
		}
	case rc.JWKS != "":
		data, err := os.ReadFile(rc.JWKS)
		var set struct {
			Keys []broker.JWK `json:"keys"`
		}
		if err != nil || json.Unmarshal(data, &set) != nil {
			fs.problem("jwks", "cannot read the registry's jwks file %s: %v; fetch the broker's /.well-known/jwks.json into it", rc.JWKS, err)
			return
		}
		if !slices.ContainsFunc(set.Keys, func(k broker.JWK) bool { return k.Kid == signer.ID }) {
			fs.problem("jwks", "%s does not hold the key that signs now (kid %s): fetch the broker's /.well-known/jwks.json into it and restart the registry", rc.JWKS, signer.ID)
			return
		}
		fs.ok("jwks", "the registry's jwks holds the key that signs now (kid %s)", signer.ID)
	default:
		fs.problem("rootcertbundle", "the registry has neither rootcertbundle nor jwks: it cannot verify any token; %s", fix)
	}
}

// doctorRealm checks that the realm answers and that clients accept its host.
func doctorRealm(ctx context.Context, fs *findings, svc *broker.Service, rc *registryAuth, registryURL string) {
	realm, err := url.Parse(rc.Realm)
	if err != nil || realm.Host == "" || (realm.Scheme != "http" && realm.Scheme != "https") {
		fs.problem("realm", "the registry's realm %q is not an absolute http(s) URL: set auth.token.realm to %s", rc.Realm, svc.Realm)
		return
	}
	if rc.Realm != svc.Realm {
		fs.problem("realm", "the registry advertises realm %s but the broker's service says %s: make them the same URL, the one clients reach", rc.Realm, svc.Realm)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rc.Realm+"?service="+url.QueryEscape(svc.Name), nil)
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		fs.problem("realm", "the realm does not answer from here: %v; check the broker runs and that %s reaches it", err, realm.Host)
	} else {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		var answer struct {
			Token  string            `json:"token"`
			Errors []json.RawMessage `json:"errors"`
		}
		isBroker := json.Unmarshal(body, &answer) == nil && (answer.Token != "" || len(answer.Errors) > 0)
		if (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized) && isBroker {
			fs.ok("realm", "the realm answers like a token endpoint (%s)", resp.Status)
		} else {
			fs.problem("realm", "the realm answered %s without a token or a token error: it is not the broker's /token (a proxy path, or another service?)", resp.Status)
		}
	}

	regHost := registryHost(rc, registryURL)
	for _, p := range realmClientProblems(realm, regHost, net.DefaultResolver.LookupIP) {
		fs.problem("realm", "%s", p)
	}
}

// registryHost is host[:port] of the registry as clients address it.
func registryHost(rc *registryAuth, registryURL string) string {
	if registryURL != "" {
		if u, err := url.Parse(registryURL); err == nil && u.Host != "" {
			return u.Host
		}
		return registryURL
	}
	return rc.Addr
}

// realmClientProblems applies the realm rules of current clients
// (protocol.md §5): crane refuses a private or loopback IP literal unless its
// host:port is the registry's; oras refuses a host that is or resolves to a
// private or loopback address unless its host name is the registry's.
func realmClientProblems(realm *url.URL, registry string, lookup func(ctx context.Context, network, host string) ([]net.IP, error)) []string {
	const fix = "serve the realm on a public name, or on the registry's own host name under a path (https://registry.example.com/token through the same ingress)"
	host, port := realm.Hostname(), realm.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[realm.Scheme]
	}
	regHost, regPort, err := net.SplitHostPort(registry)
	if err != nil {
		regHost, regPort = registry, ""
	}
	private := func(ip net.IP) bool { return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() }
	var out []string
	if ip := net.ParseIP(host); ip != nil && private(ip) && !(host == regHost && port == regPort) {
		out = append(out, fmt.Sprintf("the realm's host %s is a private or loopback IP while the registry is at %s: crane refuses it; %s", host, cmp.Or(registry, "another address"), fix))
	}
	if host == regHost {
		return out
	}
	ips := []net.IP{net.ParseIP(host)}
	if ips[0] == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		ips, _ = lookup(ctx, "ip", host)
	}
	if slices.ContainsFunc(ips, private) {
		out = append(out, fmt.Sprintf("the realm's host %s is or resolves to a private or loopback address and is not the registry's host %s: oras refuses it; %s", host, cmp.Or(regHost, "(unknown: give --registry-url)"), fix))
	}
	return out
}
