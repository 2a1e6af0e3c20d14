// Package bundles loads policies and data in OPA's bundle layout (a directory
// or an embedded file system) and gives each loaded version a revision id.
package bundles

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// Bundle is one loaded version of policy and data.
type Bundle struct {
	// Modules are the parsed Rego modules, without test files.
	Modules map[string]*ast.Module
	// Data is the base data document.
	Data map[string]any
	// Revision is the manifest's revision when it sets one, otherwise
	// Digest's first 16 hex digits.
	Revision string
	// Digest is a hash of the policy modules and data, whatever the
	// manifest says: two different contents never share a digest.
	Digest string
}

// maxBundleBytes bounds any single file read from a bundle directory;
// maxTarballBytes bounds the tarball `tollgate bundle sign` reads. Served
// tarballs have their own Limits.
const (
	maxBundleBytes  = 64 << 20
	maxTarballBytes = 256 << 20
)

// LoadDir loads a bundle directory: *.rego files anywhere in the tree and
// data.json / data.yaml files whose directory is their path in data.
// Files named *_test.rego are skipped: they are for `tollgate policy test`.
func LoadDir(dir string) (*Bundle, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("policy source: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("policy source %s: not a directory", dir)
	}
	l := bundle.NewDirectoryLoader(currentVersion(dir)).WithFilter(skipTests).WithSizeLimitBytes(maxBundleBytes)
	return read(dir, l)
}

// currentVersion is the directory to read the files of dir from. A
// Kubernetes ConfigMap or Secret volume holds its files as symlinks into
// ..data, a symlink to a hidden directory that each update swaps: the
// loader skips symlinks and would read that hidden directory as a subtree
// (its data.json under data["..2026_11_29..."]). Reading the directory
// ..data names sees each file once, all of one version.
func currentVersion(dir string) string {
	if d, err := filepath.EvalSymlinks(filepath.Join(dir, "..data")); err == nil {
		return d
	}
	return dir
}

// LoadFS loads a bundle from a file system, for the embedded default policy.
func LoadFS(fsys fs.FS, name string) (*Bundle, error) {
	l, err := bundle.NewFSLoader(fsys)
	if err != nil {
		return nil, err
	}
	return read(name, l.WithFilter(skipTests).WithSizeLimitBytes(maxBundleBytes))
}

func skipTests(abspath string, info fs.FileInfo, _ int) bool {
	return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
}

func read(name string, l bundle.DirectoryLoader) (*Bundle, error) {
	b, err := bundle.NewCustomReader(l).WithRegoVersion(ast.RegoV1).WithSkipBundleVerification(true).Read()
	if err != nil {
		return nil, fmt.Errorf("policy source %s: %w", name, err)
	}
	return fromOPA(name, b)
}

// fromOPA keeps what the broker needs of an OPA bundle and gives it a revision.
func fromOPA(name string, b bundle.Bundle) (*Bundle, error) {
	out := &Bundle{Modules: map[string]*ast.Module{}, Data: b.Data, Revision: b.Manifest.Revision}
	if out.Data == nil {
		out.Data = map[string]any{}
	}
	h := sha256.New()
	mods := slices.Clone(b.Modules)
	slices.SortFunc(mods, func(a, b bundle.ModuleFile) int { return strings.Compare(a.Path, b.Path) })
	for _, m := range mods {
		if strings.HasSuffix(m.Path, "_test.rego") {
			continue // tests are for `tollgate policy test`, not for serving
		}
		out.Modules[m.Path] = m.Parsed
		fmt.Fprintf(h, "%s\x00%d\x00", m.Path, len(m.Raw))
		h.Write(m.Raw)
	}
	data, err := json.Marshal(out.Data) // map keys are sorted: stable
	if err != nil {
		return nil, fmt.Errorf("policy source %s: data: %w", name, err)
	}
	h.Write(data)
	out.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	if out.Revision == "" {
		out.Revision = out.Digest[:len("sha256:")+16]
	}
	return out, nil
}
