# zot-like access control: per-repository glob patterns, the most specific
# pattern that matches a repository decides, and "${subject}" in a pattern
# or a user list stands for the caller (home namespaces).
#
# data.registry.zot:
#   repositories: {PATTERN: {policies: [{users, groups, actions}],
#                            default_policy: [actions for any authenticated user],
#                            anonymous_policy: [actions for anonymous callers]}}
#   admin_policy: {users, groups, actions} (applies to every repository)
#
# Patterns use glob.match with "/" as the separator: "*" stays within a
# path segment, "**" crosses segments. Among the patterns that match, the
# longest (after expanding ${subject}) is the most specific and decides.
package registry.authz

cfg := data.registry.zot

# subject is the caller's subject; undefined for anonymous callers, so a
# ${subject} pattern never matches them.
subject := input.identity.subject if {
	input.identity.anonymous == false
	input.identity.subject != ""
}

expand(p) := p if not contains(p, "${subject}")

expand(p) := replace(p, "${subject}", subject) if contains(p, "${subject}")

# best(name): the most specific pattern that matches the repository name.
best(name) := max({[count(expand(p)), p] |
	some p, _ in cfg.repositories
	glob.match(expand(p), ["/"], name)
})[1]

caller_in(pol) if {
	some u in object.get(pol, "users", [])
	expand(u) == subject
}

caller_in(pol) if {
	subject
	some g in object.get(pol, "groups", [])
	g in input.identity.groups
}

# granted(p): the actions the caller holds by pattern p.
granted(p) := ({a |
	some pol in object.get(cfg.repositories[p], "policies", [])
	caller_in(pol)
	some a in pol.actions
} | {a |
	subject
	some a in object.get(cfg.repositories[p], "default_policy", [])
}) | {a |
	input.identity.anonymous == true
	some a in object.get(cfg.repositories[p], "anonymous_policy", [])
}

admin_actions := {a |
	caller_in(cfg.admin_policy)
	some a in cfg.admin_policy.actions
}

actions_for(name) := granted(best(name)) | admin_actions

actions_for(name) := admin_actions if not best(name)

wants(s, a) if a in s.actions

wants(s, _) if "*" in s.actions

allowed contains {"type": "repository", "name": s.name, "action": a} if {
	some s in input.scopes
	s.type == "repository"
	some a in actions_for(s.name)
	a != "*"
	wants(s, a)
}

reasons contains sprintf("%s: the most specific pattern is %q", [s.name, best(s.name)]) if {
	some s in input.scopes
	s.type == "repository"
}

reasons contains "the caller is in admin_policy" if count(admin_actions) > 0
