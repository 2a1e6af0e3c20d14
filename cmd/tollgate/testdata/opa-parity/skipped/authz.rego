package registry.authz

allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	not input.identity.anonymous
}
