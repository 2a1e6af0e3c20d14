package registry.authz

# data.teams comes from teams/data.yaml, data.owners from owners.json.
allowed contains {"type": s.type, "name": s.name, "action": a} if {
	some s in input.scopes
	team := split(s.name, "/")[0]
	input.identity.subject in data.teams[team].members
	some a in s.actions
	a in {"pull", "push"}
}

allowed contains {"type": s.type, "name": s.name, "action": "delete"} if {
	some s in input.scopes
	input.identity.subject == data.owners[split(s.name, "/")[0]]
}
