# The default tollgate policy: project roles in the manner of Harbor.
#
# Data (data.registry):
#   system_admins: {"users": [...], "groups": [...]}
#   projects: {P: {"public": bool, "members": {user: role}, "groups": {group: role}}}
#
# - The project of a repository is the first segment of its name (the whole
#   name when it has no "/").
# - The caller's roles in a project come from members[subject] and from
#   groups[g] for each of the identity's groups; their actions unite:
#   admin: pull, push, delete; maintainer and developer: pull, push; guest: pull.
# - A public project gives pull to everyone, anonymous callers included.
# - Every authenticated user (anonymous false, subject not empty) gets pull,
#   push and delete on <subject>/..., its personal namespace: the
#   repositories whose first path segment is the subject. Only a subject that
#   is itself one valid path component (lower-case letters and digits, with
#   ".", "_", "__" or dashes between them) has one: "team/ci" would otherwise
#   own team/ci/... inside the project "team", and ".." or "Alice" name no
#   namespace a registry accepts. No namespace either when a project of that
#   name is defined (then the project's roles decide, so a user named
#   "library" cannot take over the project "library").
# - System administrators (data.registry.system_admins.users / .groups) get
#   pull, push and delete on every repository, and every requested action on
#   any other resource type: "*" on registry:catalog.
# - Everyone else gets nothing (undefined = deny).
#
# Only requested actions are ever allowed. A requested "*" stands for every
# action the caller holds; for repositories the policy answers with the
# concrete actions, never with "*".
#
# Output: allowed, a set of {"type", "name", "action"}; reasons, a set of
# strings that say why each action was allowed (for `policy eval --explain`).
package registry.authz

role_actions := {
	"admin": {"pull", "push", "delete"},
	"maintainer": {"pull", "push"},
	"developer": {"pull", "push"},
	"guest": {"pull"},
}

repository_actions := {"pull", "push", "delete"}

# subject is the caller's subject, defined only for an authenticated caller.
# Anonymous callers (and identities without a usable subject) never match a
# member entry, a system admin entry, or a personal namespace.
# Robots are not people: they have no subject here, so no membership,
# personal namespace or admin entry applies to them.
subject := input.identity.subject if {
	input.identity.anonymous == false
	not robot
	is_string(input.identity.subject)
	input.identity.subject != ""
}

# robot: the caller is a robot account (connector "robot"); its declared
# scopes are in identity.claims.robot.scopes and are the most it may get.
robot if input.identity.connector == "robot"

# admin_via: how the caller is a system administrator ("user", "group G").
admin_via contains "user" if {
	subject in data.registry.system_admins.users
}

admin_via contains sprintf("group %s", [g]) if {
	subject
	some g in input.identity.groups
	g in data.registry.system_admins.groups
}

project_of(name) := split(name, "/")[0]

# path_component(x): x is one component of a repository name, as the
# distribution reference grammar defines it; in particular it holds no "/",
# so <x>/... is the set of repositories whose first segment is exactly x.
path_component(x) if regex.match(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`, x)

# wants(s, a): the scope s asks for action a, by name or through "*".
wants(s, a) if a in s.actions

wants(s, _) if "*" in s.actions

# repository(s): s is a requested repository scope.
repository(s) if {
	s.type == "repository"
	is_string(s.name)
}

# caller_roles(p): the caller's [role, via] pairs in the project document p.
caller_roles(p) := {[role, "member"] | role := p.members[subject]} | {[role, sprintf("group %s", [g])] |
	subject
	some g in input.identity.groups
	role := p.groups[g]
}

# grants holds [scope, action, why] for every allowed action; why is a
# tuple formatted only when reasons are asked for (explain), so the hot path
# does no string formatting. Each scope's project is looked up directly:
# the cost does not grow with the number of projects or users.

# Project roles (members and groups).
grants contains [s, a, ["role", role, project_of(s.name), via]] if {
	some s in input.scopes
	repository(s)
	some [role, via] in caller_roles(data.registry.projects[project_of(s.name)])
	some a in role_actions[role]
	wants(s, a)
}

# Public projects: pull for everyone (robots: only within their scopes).
grants contains [s, "pull", ["public", project_of(s.name)]] if {
	not robot
	some s in input.scopes
	repository(s)
	data.registry.projects[project_of(s.name)].public == true
	wants(s, "pull")
}

# Personal namespaces: <subject>/... (not when <subject> is a project).
grants contains [s, a, ["owner"]] if {
	some s in input.scopes
	repository(s)
	startswith(s.name, concat("", [subject, "/"]))
	path_component(subject)
	not data.registry.projects[subject]
	some a in repository_actions
	wants(s, a)
}

# System administrators: pull, push, delete on every repository.
grants contains [s, a, ["admin", via]] if {
	some via in admin_via
	some s in input.scopes
	repository(s)
	some a in repository_actions
	wants(s, a)
}

# System administrators: every requested action, literally, on any other
# resource type ("*" on registry:catalog).
grants contains [s, a, ["admin", via]] if {
	some via in admin_via
	some s in input.scopes
	s.type != "repository"
	some a in s.actions
}

# Robots: exactly the requested actions that a declared scope covers (the
# name may be a glob: * within a path segment, ** across segments), and only
# on the robot's service when it is bound to one.
grants contains [s, a, ["robot", sprintf("%s:%s:%s", [d.type, d.name, concat(",", d.actions)])]] if {
	robot
	object.get(input.identity.claims.robot, "service", "") in {"", input.service}
	some s in input.scopes
	some d in input.identity.claims.robot.scopes
	d.type == s.type
	glob.match(d.name, ["/"], s.name)
	some a in d.actions
	a != "*"
	wants(s, a)
}

allowed contains {"type": s.type, "name": s.name, "action": a} if {
	some [s, a, _] in grants
}

reasons contains explain(why) if {
	some [_, _, why] in grants
}

explain(why) := sprintf("%s is %s in project %s (%s)", [subject, why[1], why[2], why[3]]) if why[0] == "role"

explain(why) := sprintf("project %s is public: pull for everyone", [why[1]]) if why[0] == "public"

explain(why) := sprintf("%s owns the namespace %s/", [subject, subject]) if why[0] == "owner"

explain(why) := sprintf("%s is a system administrator (%s)", [subject, why[1]]) if why[0] == "admin"

explain(why) := sprintf("%s is a robot with the scope %s", [input.identity.subject, why[1]]) if why[0] == "robot"
