package identitytest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/identity"
)

// PasswordAdapter is what a password adapter offers the chain.
type PasswordAdapter interface {
	identity.PasswordConnector
	identity.RefreshConnector
}

// Password describes a password adapter holding one user, for RunPassword.
type Password struct {
	Adapter  PasswordAdapter
	User     string // a user the adapter knows...
	Password string // ...and its password
	Subject  string // the subject of User's identity
	// Unknown is a name the adapter does not know at all: its Login says
	// identity.ErrUnknownUser so a chain asks the next connector.
	Unknown string
	// Remove deletes User from the backend (the file, the directory, the
	// store); RunPassword calls it last.
	Remove func(t *testing.T)
}

// RunPassword runs the cases every password adapter must pass, in order
// (the last removes the user). What the broker answers depends on exactly
// these answers: ok, a wrong credential (ok=false, nil error), an unknown
// name (identity.ErrUnknownUser), an outage (another error).
func RunPassword(t *testing.T, p Password) {
	ctx := context.Background()
	a := p.Adapter
	var id identity.Identity
	t.Run("right password", func(t *testing.T) {
		var ok bool
		var err error
		id, ok, err = a.Login(ctx, p.User, p.Password)
		if !ok || err != nil || id.Subject != p.Subject || id.Credential == "" {
			t.Fatalf("Login(%q) = %+v, %v, %v; want ok with subject %q and a credential fingerprint", p.User, id, ok, err, p.Subject)
		}
		// The chain names the connector: the adapter does not know its name.
		chain := identity.NewChain([]identity.Connector{Connector(t, "conformance", a)}, nil)
		got, ok, err := chain.Login(ctx, p.User, p.Password)
		if !ok || err != nil || got.Connector != "conformance" || got.Subject != p.Subject {
			t.Fatalf("through a chain: %+v, %v, %v; want connector %q", got, ok, err, "conformance")
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		if _, ok, err := a.Login(ctx, p.User, p.Password+"x"); ok || err != nil {
			t.Fatalf("Login = %v, %v; want false, nil", ok, err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		if _, ok, err := a.Login(ctx, p.Unknown, p.Password); ok || !errors.Is(err, identity.ErrUnknownUser) {
			t.Fatalf("Login(%q) = %v, %v; want false, ErrUnknownUser", p.Unknown, ok, err)
		}
	})
	t.Run("empty password", func(t *testing.T) {
		refused(t, "empty password")(a.Login(ctx, p.User, ""))
		refused(t, "empty user")(a.Login(ctx, "", p.Password))
	})
	t.Run("odd input", func(t *testing.T) {
		for _, c := range oddLogins(p.User, p.Password) {
			refused(t, c.name)(a.Login(ctx, c.user, c.password))
		}
	})
	t.Run("refresh", func(t *testing.T) {
		got, ok, err := a.Refresh(ctx, id)
		if !ok || err != nil || got.Subject != p.Subject {
			t.Fatalf("Refresh = %+v, %v, %v; want ok with subject %q", got, ok, err, p.Subject)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		gone, cancel := context.WithCancel(ctx)
		cancel()
		failed(t, "Login")(a.Login(gone, p.User, p.Password))
		failed(t, "Refresh")(a.Refresh(gone, id))
	})
	t.Run("refresh after removal", func(t *testing.T) {
		p.Remove(t)
		if _, ok, err := a.Refresh(ctx, id); ok || err != nil {
			t.Fatalf("Refresh of a removed user = %v, %v; want false, nil", ok, err)
		}
		refused(t, "login of a removed user")(a.Login(ctx, p.User, p.Password))
	})
}

// TokenAdapter is what a token adapter offers the chain.
type TokenAdapter interface {
	identity.TokenConnector
	identity.RefreshConnector
}

// Token describes a token adapter and tokens for RunToken.
type Token struct {
	Adapter TokenAdapter
	Token   string // a valid token...
	Subject string // ...and the subject of its identity
	// Forged is a token of a trusted issuer that must not verify (a bad
	// signature): refused with an *identity.RejectedError saying why.
	Forged string
	// Foreign is a well-formed token of an issuer the adapter does not
	// trust: ok=false with no error, so a chain asks the next connector.
	Foreign string
	// Remove makes the subject untrusted (the issuer is no longer
	// configured, a required claim changed) and returns the adapter as it
	// then is; RunToken calls it last.
	Remove func(t *testing.T) TokenAdapter
}

// RunToken runs the cases every token adapter must pass, in order.
func RunToken(t *testing.T, k Token) {
	ctx := context.Background()
	a := k.Adapter
	var id identity.Identity
	t.Run("valid token", func(t *testing.T) {
		var ok bool
		var err error
		id, ok, err = a.Verify(ctx, k.Token)
		if !ok || err != nil || id.Subject != k.Subject {
			t.Fatalf("Verify = %+v, %v, %v; want ok with subject %q", id, ok, err, k.Subject)
		}
		chain := identity.NewChain([]identity.Connector{Connector(t, "conformance", a)}, nil)
		got, ok, err := chain.VerifyToken(ctx, k.Token)
		if !ok || err != nil || got.Connector != "conformance" || got.Subject != k.Subject {
			t.Fatalf("through a chain: %+v, %v, %v; want connector %q", got, ok, err, "conformance")
		}
	})
	t.Run("forged token", func(t *testing.T) {
		_, ok, err := a.Verify(ctx, k.Forged)
		if ok || !errors.As(err, new(*identity.RejectedError)) {
			t.Fatalf("Verify = %v, %v; want false with a reason", ok, err)
		}
	})
	t.Run("foreign token", func(t *testing.T) {
		if _, ok, err := a.Verify(ctx, k.Foreign); ok || err != nil {
			t.Fatalf("Verify = %v, %v; want false, nil", ok, err)
		}
	})
	t.Run("odd input", func(t *testing.T) {
		for _, c := range oddTokens(k.Token) {
			rejectedToken(t, c.name)(a.Verify(ctx, c.token))
		}
	})
	t.Run("refresh", func(t *testing.T) {
		got, ok, err := a.Refresh(ctx, id)
		if !ok || err != nil || got.Subject != k.Subject {
			t.Fatalf("Refresh = %+v, %v, %v; want ok with subject %q", got, ok, err, k.Subject)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		gone, cancel := context.WithCancel(ctx)
		cancel()
		failed(t, "Verify")(a.Verify(gone, k.Token))
		failed(t, "Refresh")(a.Refresh(gone, id))
	})
	t.Run("refresh after removal", func(t *testing.T) {
		after := k.Remove(t)
		if _, ok, err := after.Refresh(ctx, id); ok || err != nil {
			t.Fatalf("Refresh of an untrusted identity = %v, %v; want false, nil", ok, err)
		}
	})
}

type oddLogin struct{ name, user, password string }

// oddLogins are credentials near the right ones that must all be refused:
// sizes the broker lets through (user names up to 256 bytes, passwords up
// to 8 KiB), NUL bytes, invalid UTF-8, and filter or glob characters.
func oddLogins(user, password string) []oddLogin {
	return []oddLogin{
		{"8 KiB password", user, strings.Repeat("p", 8<<10)},
		{"password with the right prefix", user, password + strings.Repeat("x", 100)},
		{"NUL in password", user, password + "\x00"},
		{"NUL-split password", user, password[:len(password)/2] + "\x00" + password[len(password)/2:]},
		{"invalid UTF-8 password", user, "\xff\xfe\xfd"},
		{"8 KiB user", strings.Repeat("u", 8<<10), password},
		{"NUL in user", user + "\x00", password},
		{"invalid UTF-8 user", "\xff\xfe", password},
		{"wildcard user", "*", password},
		{"user with a filter", user + ")(uid=*", password},
		{"user prefix", user[:len(user)-1] + "*", password},
	}
}

type oddToken struct{ name, token string }

// oddTokens are malformed tokens that must all be refused.
func oddTokens(valid string) []oddToken {
	return []oddToken{
		{"empty", ""},
		{"8 KiB junk", strings.Repeat("A", 8<<10)},
		{"8 KiB of dots", strings.Repeat(".", 8<<10)},
		{"three empty parts", ".."},
		{"JWT-shaped junk", "eyJhbGciOiJub25lIn0.eyJ9.x"},
		{"NUL", valid + "\x00"},
		{"invalid UTF-8", "\xff\xfe.\xfd.\xfc"},
		{"truncated", valid[:len(valid)/2]},
		{"signature cut", valid[:strings.LastIndex(valid, ".")+1]},
	}
}

// refused checks a Login answer that must be a refusal, not an outage:
// ok=false with no error, or with identity.ErrUnknownUser.
func refused(t *testing.T, what string) func(identity.Identity, bool, error) {
	t.Helper()
	return func(_ identity.Identity, ok bool, err error) {
		t.Helper()
		if ok || (err != nil && !errors.Is(err, identity.ErrUnknownUser)) {
			t.Errorf("%s: ok=%v err=%v; want refused (false, nil or ErrUnknownUser)", what, ok, err)
		}
	}
}

// rejectedToken checks a Verify answer that must be a refusal, not an
// outage: ok=false with no error or with an *identity.RejectedError.
func rejectedToken(t *testing.T, what string) func(identity.Identity, bool, error) {
	t.Helper()
	return func(_ identity.Identity, ok bool, err error) {
		t.Helper()
		if ok || (err != nil && !errors.As(err, new(*identity.RejectedError))) {
			t.Errorf("%s: ok=%v err=%v; want refused", what, ok, err)
		}
	}
}

// failed checks the answer to a caller that has gone away: an error, so
// the broker never grants to nobody, and never ok.
func failed(t *testing.T, what string) func(identity.Identity, bool, error) {
	t.Helper()
	return func(_ identity.Identity, ok bool, err error) {
		t.Helper()
		if ok || err == nil {
			t.Errorf("%s with a cancelled context: ok=%v err=%v; want an error", what, ok, err)
		}
	}
}
