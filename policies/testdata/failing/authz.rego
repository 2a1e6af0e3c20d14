# A deliberately failing fixture for the parity test of `tollgate policy
# test` and `opa test` (cmd/tollgate/opa_parity_test.go): of its tests one
# passes, one fails, one errors and one is skipped. Nothing else loads it.
package registry.authz

allowed contains {"type": "repository", "name": s.name, "action": "pull"} if {
	some s in input.scopes
	startswith(s.name, "public/")
}

# Never covered by the tests below.
allowed contains {"type": "repository", "name": s.name, "action": "push"} if {
	input.identity.subject == "admin"
	some s in input.scopes
}
