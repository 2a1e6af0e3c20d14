package policies

import (
	"context"
	"errors"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/plugins/bundle"
)

// Reload has the bundle plugin load its bundles again now: what a local
// bundle (resource file://..., trigger: manual) needs when its directory or
// tarball changed, since OPA's file loader reads it once by itself. A
// bundle that fails to load, verify or compile leaves the active one in
// force; the error is also in the bundle's status (Bundles, /readyz).
func (e *OPA) Reload(ctx context.Context) error {
	bp := opabundle.Lookup(e.manager)
	if bp == nil {
		return errors.New("no bundle plugin")
	}
	return bp.Trigger(ctx)
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
