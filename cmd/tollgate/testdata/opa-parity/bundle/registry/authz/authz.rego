package registry.authz

allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	split(s.name, "/")[0] in data.config.public
}

allowed contains {"type": s.type, "name": s.name, "action": a} if {
	some s in input.scopes
	not input.identity.anonymous
	startswith(s.name, concat("", [input.identity.subject, "/"]))
	some a in s.actions
}
