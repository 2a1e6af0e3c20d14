package policies

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/storage"
)

// Reload has the bundle plugin load its bundles again now: what a local
// bundle (resource file://..., trigger: manual) needs when its directory or
// tarball changed, since OPA's file loader reads it once by itself. check,
// when not nil, runs first (tollgate's limits on a tarball, which OPA
// reads whole into memory): when it fails, nothing is loaded. A bundle
// that fails leaves the active one in force; the error is in the bundle's
// status (Bundles, /readyz) and counted as a failed attempt.
func (e *OPA) Reload(ctx context.Context, check func() error) error {
	bp := opabundle.Lookup(e.manager)
	if bp == nil {
		return errors.New("no bundle plugin")
	}
	if check != nil {
		if err := check(); err != nil {
			e.failAll(err)
			return err
		}
	}
	return bp.Trigger(ctx)
}

// failAll records err as a failed attempt of every bundle, as the bundle
// plugin reports its own failures.
func (e *OPA) failAll(err error) {
	e.statusMu.Lock()
	st := make(map[string]*opabundle.Status, len(e.status))
	for name, s := range e.status {
		c := *s
		c.SetRequest()
		c.SetError(err)
		st[name] = &c
	}
	e.statusMu.Unlock()
	e.bundleStatus(st)
}

// contentRevision is "sha256:" and the first 16 hex digits of a digest of
// the served policies (raw, by id, tests left out) and the data, as
// bundles.Bundle names a bundle without a revision: two contents never
// share one, and replicas serving the same files agree.
func contentRevision(ctx context.Context, store storage.Store, txn storage.Transaction) (string, error) {
	ids, err := store.ListPolicies(ctx, txn)
	if err != nil {
		return "", fmt.Errorf("listing the policies: %w", err)
	}
	slices.Sort(ids)
	h := sha256.New()
	for _, id := range ids {
		if strings.HasSuffix(id, "_test.rego") {
			continue
		}
		raw, err := store.GetPolicy(ctx, txn, id)
		if err != nil {
			return "", fmt.Errorf("reading policy %s: %w", id, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", id, len(raw))
		h.Write(raw)
	}
	data, err := store.Read(ctx, txn, storage.RootPath)
	if err != nil && !storage.IsNotFound(err) {
		return "", fmt.Errorf("reading the data: %w", err)
	}
	if v, ok := data.(ast.Value); ok {
		if data, err = ast.JSON(v); err != nil {
			return "", fmt.Errorf("reading the data: %w", err)
		}
	}
	if m, ok := data.(map[string]any); ok {
		// data.system holds the bundles' metadata, not their content.
		m = maps.Clone(m)
		delete(m, "system")
		data = m
	}
	js, err := json.Marshal(data) // map keys sorted: stable
	if err != nil {
		return "", fmt.Errorf("reading the data: %w", err)
	}
	h.Write(js)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// servedModules leaves out *_test.rego modules: OPA's file loader compiles
// a local bundle's tests in, as `opa run` does, but they are for
// `tollgate policy test` and must not turn the decision cache off.
func servedModules(modules map[string]*ast.Module) map[string]*ast.Module {
	out := make(map[string]*ast.Module, len(modules))
	for name, m := range modules {
		if !strings.HasSuffix(name, "_test.rego") {
			out[name] = m
		}
	}
	return out
}
