package bundles

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"
)

// DefaultKeyID is the key id a signature names when none is given; it is
// also OPA's default, so bundles signed by either tool verify in the other.
const DefaultKeyID = "default"

// Signing says how to sign a bundle: a private key (PEM file or content),
// its algorithm (RS256, ES256, PS256, ...), the key id to put in the
// signature, and an optional file of extra JWT claims (for example a scope).
type Signing struct {
	Key, Algorithm, KeyID, ClaimsFile string
}

func (s *Signing) config() (*bundle.SigningConfig, string) {
	id := s.KeyID
	if id == "" {
		id = DefaultKeyID
	}
	return bundle.NewSigningConfig(s.Key, s.Algorithm, s.ClaimsFile), id
}

// Build does what `opa build --bundle dir` does: it loads dir as a bundle
// (its .manifest, policies, data and tests), compiles it to check it, and
// writes the gzipped bundle to w, signed when signing is not nil. An empty
// revision keeps the manifest's.
func Build(ctx context.Context, dir, revision string, signing *Signing, w io.Writer) error {
	if st, err := os.Stat(dir); err != nil {
		return err
	} else if !st.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	// Paths in the bundle are relative to dir, as `cd dir && opa build -b .`
	// would write them, so a bundle does not depend on where it was built.
	c := compile.New().
		WithFS(os.DirFS(dir)).
		WithPaths(".").
		WithAsBundle(true).
		WithRegoVersion(ast.RegoV1).
		WithOutput(w)
	if revision != "" {
		c = c.WithRevision(revision)
	}
	if signing != nil {
		sc, id := signing.config()
		c = c.WithBundleSigningConfig(sc).WithBundleVerificationKeyID(id)
	}
	return c.Build(ctx)
}

// Sign reads a bundle tarball and writes it again to w with a new
// .signatures.json (any old one is replaced), as `opa build` would have
// written it with --signing-key.
func Sign(in io.Reader, signing *Signing, w io.Writer) error {
	b, err := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(io.LimitReader(in, maxTarballBytes), "")).
		WithRegoVersion(ast.RegoV1).
		WithSkipBundleVerification(true).
		WithSizeLimitBytes(maxBundleBytes).
		Read()
	if err != nil {
		return fmt.Errorf("read bundle: %w", err)
	}
	sc, id := signing.config()
	if err := b.GenerateSignature(sc, id, false); err != nil {
		return fmt.Errorf("sign bundle: %w", err)
	}
	// Write to memory first: a failure must not leave half a bundle behind.
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).DisableFormat(true).Write(b); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}
