# A deliberately broken policy for the parity test of `tollgate policy
# test` and `opa test`: one test passes, one fails, one errors.
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
