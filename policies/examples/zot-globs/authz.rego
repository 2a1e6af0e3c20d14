# zot-like access control: paste the "accessControl" section of a zot
# configuration into data.registry.zot, and tollgate decides as zot would.
#
# data.registry.zot (zot's own keys):
#   repositories: {PATTERN: {"policies": [{"users", "groups", "actions"}],
#                            "defaultPolicy": [actions of any authenticated user],
#                            "anonymousPolicy": [actions of anonymous callers]}}
#   adminPolicy:  {"users", "groups", "actions"} (on every repository)
#   groups:       {GROUP: {"users": [...]}} (groups defined in the config,
#                 in addition to the identity's own groups)
#
# As in zot:
# - Patterns are globs ("*" within a path segment, "**" across segments).
#   Of the patterns that match a repository, the longest one decides alone:
#   "**" applies only where nothing more specific matches.
# - Within that pattern, the caller holds the union of the policies naming
#   them or one of their groups, plus defaultPolicy when authenticated, or
#   anonymousPolicy when anonymous. adminPolicy adds to every repository.
# - zot's actions become registry actions: read = pull, create = push,
#   delete = delete. "update" (overwrite a tag) grants nothing by itself: a
#   push token cannot tell a new tag from an overwrite (no token broker can
#   rule per tag), so zot's "create without update" (immutable tags) is not
#   enforced here.
#
# Beyond zot: "${subject}" in a pattern or a user list stands for the caller,
# so one entry gives every user a home namespace ("${subject}/**"). It is
# expanded before the longest pattern is chosen, and only for a subject that
# is one repository path component (lower-case letters and digits, with ".",
# "_", "__" or dashes between them): "team/ci" would make team/ci/** beat
# team/**, and "*" or "{team,x}" are glob syntax that matches other
# namespaces. Anonymous callers and other subjects never match it.
package registry.authz

cfg := data.registry.zot

registry_actions := {"read": "pull", "create": "push", "delete": "delete"}

# subject is the caller's subject; undefined for anonymous callers.
subject := input.identity.subject if {
	input.identity.anonymous == false
	input.identity.subject != ""
}

# groups: the identity's groups and the config's groups listing the caller.
groups := {g | some g in input.identity.groups} | {g |
	some g, def in object.get(cfg, "groups", {})
	subject in def.users
}

expand(p) := p if not contains(p, "${subject}")

expand(p) := replace(p, "${subject}", home) if contains(p, "${subject}")

# home: the subject as "${subject}" expands, when it is one path component.
home := subject if regex.match(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`, subject)

# best(name): the longest pattern that matches the repository name.
best(name) := max({[count(expand(p)), p] |
	some p, _ in cfg.repositories
	glob.match(expand(p), ["/"], name)
})[1]

# names(pol): the caller is named by the policy, as a user or by a group.
names(pol) if {
	some u in object.get(pol, "users", [])
	expand(u) == subject
}

names(pol) if {
	some g in object.get(pol, "groups", [])
	g in groups
}

# zot_actions(p): the zot actions the caller holds by the pattern p.
zot_actions(p) := (policy_actions(p) | default_actions(p)) | anonymous_actions(p)

policy_actions(p) := {a |
	some pol in object.get(cfg.repositories[p], "policies", [])
	names(pol)
	some a in pol.actions
}

default_actions(p) := {a |
	subject
	some a in object.get(cfg.repositories[p], "defaultPolicy", [])
}

anonymous_actions(p) := {a |
	input.identity.anonymous == true
	some a in object.get(cfg.repositories[p], "anonymousPolicy", [])
}

admin_actions := {a |
	names(cfg.adminPolicy)
	some a in cfg.adminPolicy.actions
}

held(name) := zot_actions(best(name)) | admin_actions

held(name) := admin_actions if not best(name)

# actions_for(name): the registry actions the caller holds on a repository.
actions_for(name) := {registry_actions[a] | some a in held(name)}

wants(s, a) if a in s.actions

wants(s, _) if "*" in s.actions

allowed contains {"type": "repository", "name": s.name, "action": a} if {
	some s in input.scopes
	s.type == "repository"
	some a in actions_for(s.name)
	wants(s, a)
}

reasons contains sprintf("%s: the longest matching pattern is %q", [s.name, best(s.name)]) if {
	some s in input.scopes
	s.type == "repository"
}

reasons contains sprintf("%s: no pattern matches", [s.name]) if {
	some s in input.scopes
	s.type == "repository"
	not best(s.name)
}

reasons contains "the caller is in adminPolicy" if count(admin_actions) > 0
