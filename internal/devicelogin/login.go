package devicelogin

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tollgate/tollgate/internal/credhelper"
)

// Options are the command's: the registry as typed, and where things live.
type Options struct {
	Registry     string
	Connector    string
	Insecure     bool
	Store        *credhelper.Store
	DockerConfig string // path of config.json
}

// Login runs the device flow for opts.Registry, telling the person what
// to do on out, stores the session's refresh token and points the docker
// config's credHelpers at tollgate for the registry's host.
func (c *Client) Login(ctx context.Context, opts Options, out io.Writer) (Session, error) {
	host, err := credhelper.Host(opts.Registry)
	if err != nil {
		return Session{}, err
	}
	b, err := Discover(ctx, c.HTTP, opts.Registry, opts.Insecure)
	if err != nil {
		return Session{}, err
	}
	a, err := c.Start(ctx, b, opts.Connector)
	if err != nil {
		return Session{}, err
	}
	fmt.Fprintf(out, "To log in to %s, open %s\nand enter the code: %s\n", host, a.VerificationURI, a.UserCode)
	if a.VerificationURIComplete != "" {
		fmt.Fprintf(out, "(or open %s)\n", a.VerificationURIComplete)
	}
	fmt.Fprintln(out, "Waiting for the approval... (Ctrl-C to cancel)")
	s, err := c.Poll(ctx, b, a)
	if err != nil {
		return s, err
	}
	cred := credhelper.Credential{
		Username: credhelper.IdentityTokenUser, Secret: s.RefreshToken,
		Realm: b.Realm.String(), Service: b.Service, SessionID: s.SessionID, Subject: s.Subject,
	}
	if err := opts.Store.Put(host, cred); err != nil {
		return s, err
	}
	removed, err := credhelper.Register(opts.DockerConfig, host)
	if err != nil {
		return s, fmt.Errorf("the credential is stored, but the docker config was not updated: %w", err)
	}
	if removed {
		fmt.Fprintf(out, "Removed the credential docker kept for %s in %s: the helper replaces it.\n", host, opts.DockerConfig)
	}
	return s, nil
}

// Logout ends the session at the broker (best effort: a broker that cannot
// be reached gets a warning on out), erases the credential and the
// credHelpers entry. It returns whether a credential was stored.
func (c *Client) Logout(ctx context.Context, opts Options, out io.Writer) (bool, error) {
	host, err := credhelper.Host(opts.Registry)
	if err != nil {
		return false, err
	}
	cred, err := opts.Store.Get(host)
	found := err == nil
	switch {
	case errors.Is(err, credhelper.ErrNotFound):
	case err != nil:
		return false, err
	default:
		if err := c.endSession(ctx, opts, cred); err != nil {
			fmt.Fprintf(out, "warning: %v; the credential is erased here, the session ends at its expiry\n", err)
		}
		if err := opts.Store.Erase(host); err != nil {
			return found, err
		}
	}
	return found, credhelper.Unregister(opts.DockerConfig, host)
}

func (c *Client) endSession(ctx context.Context, opts Options, cred credhelper.Credential) error {
	// A stored realm was accepted at login, over http too when allowed then.
	b, err := BrokerFromRealm(cred.Realm, cred.Service, true)
	if cred.Realm == "" {
		b, err = Discover(ctx, c.HTTP, opts.Registry, opts.Insecure)
	}
	if err != nil {
		return err
	}
	return c.EndSession(ctx, b, cred.Secret)
}
