package registry.authz

import future.keywords.in

admins := {"root", "alice"}

allowed[{"type": s.type, "name": s.name, "action": a}] {
	some s in input.scopes
	admins[input.identity.subject]
	a := s.actions[_]
}

token_ttl = 60 {
	admins[input.identity.subject]
}
