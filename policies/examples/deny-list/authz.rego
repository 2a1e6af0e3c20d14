# An explicit deny list that wins over every grant.
#
# Grants come from project roles, as in the default policy (compact here):
# data.registry.projects[P].members[user] / .groups[group] = admin |
# developer | guest. Then data.registry.deny takes away, whatever granted:
#
#   users:        [names]            nothing at all for them
#   groups:       [names]            nothing at all for members
#   repositories: [{"pattern": GLOB, "actions": [...]}]
#                 those actions on matching repositories, for everyone
#                 ("**" crosses path segments, "*" stays within one)
#
# `allowed` is the grants minus the denials; `reasons` names each denial
# that removed something, so `tollgate policy eval --explain` shows it.
package registry.authz

role_actions := {
	"admin": {"pull", "push", "delete"},
	"developer": {"pull", "push"},
	"guest": {"pull"},
}

subject := input.identity.subject if {
	input.identity.anonymous == false
	input.identity.subject != ""
}

project_of(name) := split(name, "/")[0]

roles(name) := {r | r := data.registry.projects[project_of(name)].members[subject]} | {r |
	some g in input.identity.groups
	r := data.registry.projects[project_of(name)].groups[g]
}

wants(s, a) if a in s.actions

wants(s, _) if "*" in s.actions

grants contains [s.name, a] if {
	some s in input.scopes
	s.type == "repository"
	some role in roles(s.name)
	some a in role_actions[role]
	wants(s, a)
}

# denied contains [name, action, why] for each grant a denial removes.
denied contains [name, a, sprintf("user %s is on the deny list", [subject])] if {
	some [name, a] in grants
	subject in data.registry.deny.users
}

denied contains [name, a, sprintf("group %s is on the deny list", [g])] if {
	some [name, a] in grants
	some g in input.identity.groups
	g in data.registry.deny.groups
}

denied contains [name, a, sprintf("%s on %s is denied by %q", [a, name, rule.pattern])] if {
	some [name, a] in grants
	some rule in data.registry.deny.repositories
	glob.match(rule.pattern, ["/"], name)
	a in rule.actions
}

allowed contains {"type": "repository", "name": name, "action": a} if {
	some [name, a] in grants
	not denied_pair(name, a)
}

denied_pair(name, a) if {
	some [n, x, _] in denied
	n == name
	x == a
}

reasons contains why if {
	some [_, _, why] in denied
}
