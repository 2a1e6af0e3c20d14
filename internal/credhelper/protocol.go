package credhelper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// HelperName is the name under which docker and the other clients run the
// helper: credHelpers {"host": "tollgate"} makes them call
// docker-credential-tollgate.
const HelperName = "docker-credential-tollgate"

// wireCredential is the protocol's JSON (docker/docker-credential-helpers,
// credentials.Credentials).
type wireCredential struct {
	ServerURL string
	Username  string
	Secret    string
}

// Serve answers one call of the credential-helper protocol: args are the
// arguments after the program name (get, store, erase, list or version),
// the request comes on stdin, the answer goes to stdout. As the reference
// helpers do, an error is printed on stdout (clients match "credentials
// not found in native keychain" there) and the exit code is 1.
func Serve(s *Store, args []string, stdin io.Reader, stdout io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintf(stdout, "usage: %s get|store|erase|list|version\n", HelperName)
		return 1
	}
	if err := handle(s, args[0], stdin, stdout); err != nil {
		fmt.Fprintln(stdout, err)
		return 1
	}
	return 0
}

func handle(s *Store, action string, stdin io.Reader, stdout io.Writer) error {
	in, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
	if err != nil && action != "list" && action != "version" {
		return fmt.Errorf("read the request: %w", err)
	}
	switch action {
	case "get":
		host, err := Host(string(in))
		if err != nil {
			return err
		}
		c, err := s.Get(host)
		if err != nil {
			return err
		}
		return encode(stdout, wireCredential{ServerURL: strings.TrimSpace(string(in)), Username: c.Username, Secret: c.Secret})
	case "store":
		return store(s, in)
	case "erase":
		host, err := Host(string(in))
		if err != nil {
			return err
		}
		return s.Erase(host)
	case "list":
		m, err := s.List()
		if err != nil {
			return err
		}
		return encode(stdout, m)
	case "version":
		_, err := fmt.Fprintln(stdout, HelperName)
		return err
	}
	return fmt.Errorf("unknown credential helper action %q (want get, store, erase, list or version)", action)
}

// store keeps what a client's own login (docker login against a tollgate
// realm) obtained. Only identity tokens are kept: the point of this helper
// is that no password is ever written to disk.
func store(s *Store, in []byte) error {
	var w wireCredential
	if err := json.Unmarshal(in, &w); err != nil {
		return fmt.Errorf("read the credential to store: %w", err)
	}
	host, err := Host(w.ServerURL)
	if err != nil {
		return err
	}
	if w.Username != IdentityTokenUser {
		return errors.New("the tollgate helper stores identity tokens only, never a password: log in with `tollgate login " + host + "`")
	}
	if w.Secret == "" {
		return errors.New("no secret in the credential to store")
	}
	old, err := s.Get(host)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	// The realm still names the broker; the session is the new token's.
	return s.Put(host, Credential{Username: w.Username, Secret: w.Secret, Realm: old.Realm, Service: old.Service})
}

// encode writes v as one line of JSON, "<token>" as it is (no HTML escapes).
func encode(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
