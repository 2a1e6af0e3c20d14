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
#
# Each kind of grant below is an `allowed` rule and, beside it, the
# `reasons` rule that says why, under the same conditions. The broker
# evaluates only `allowed`, once per token request that misses the decision
# cache, so `allowed` builds nothing it does not return: no reason strings,
# no intermediate sets (issue 20: a third of the time of the earlier shape,
# which derived both from one set of [scope, action, why] tuples).
package registry.authz

# What a decision on a repository depends on, for tollgate's decision cache
# (policies/README.md, "Decision cache"): its name only up to the first "/"
# (project_of, and the "<subject>/" prefix of personal namespaces), so one
# cached decision answers team/app and team/web alike. Except a robot's:
# its scopes name whole repositories. The differential test
# (policies/differential_test.go) holds this policy to it.
decision_cache := {"repository_key": "namespace", "except_connectors": ["robot"]}

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

# admin: the caller is a system administrator, one way or another.
admin if subject in data.registry.system_admins.users

admin if {
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

# project(s): the data of the project of the repository scope s.
project(s) := data.registry.projects[project_of(s.name)] if repository(s)

# Each scope's project is looked up directly: the cost does not grow with
# the number of projects or users.

# Project roles, as a member.
allowed contains {"type": s.type, "name": s.name, "action": a} if {
	some s in input.scopes
	some a in role_actions[project(s).members[subject]]
	wants(s, a)
}

reasons contains sprintf("%s is %s in project %s (member)", [subject, role, project_of(s.name)]) if {
	some s in input.scopes
	role := project(s).members[subject]
	some a in role_actions[role]
	wants(s, a)
}

# Project roles, through each of the caller's groups.
allowed contains {"type": s.type, "name": s.name, "action": a} if {
	subject
	some s in input.scopes
	some g in input.identity.groups
	some a in role_actions[project(s).groups[g]]
	wants(s, a)
}

reasons contains sprintf("%s is %s in project %s (group %s)", [subject, role, project_of(s.name), g]) if {
	subject
	some s in input.scopes
	some g in input.identity.groups
	role := project(s).groups[g]
	some a in role_actions[role]
	wants(s, a)
}

# Public projects: pull for everyone (robots: only within their scopes).
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	public(s)
}

reasons contains sprintf("project %s is public: pull for everyone", [project_of(s.name)]) if {
	some s in input.scopes
	public(s)
}

public(s) if {
	not robot
	project(s).public == true
	wants(s, "pull")
}

# Personal namespaces: <subject>/... (not when <subject> is a project).
allowed contains {"type": s.type, "name": s.name, "action": a} if {
	some s in input.scopes
	owns(s)
	some a in repository_actions
	wants(s, a)
}

reasons contains sprintf("%s owns the namespace %s/", [subject, subject]) if {
	some s in input.scopes
	owns(s)
	some a in repository_actions
	wants(s, a)
}

owns(s) if {
	repository(s)
	startswith(s.name, concat("", [subject, "/"]))
	path_component(subject)
	not data.registry.projects[subject]
}

# System administrators: pull, push, delete on every repository, and every
# requested action, literally, on any other resource type ("*" on
# registry:catalog).
allowed contains {"type": s.type, "name": s.name, "action": a} if {
	admin
	some s in input.scopes
	some a in admin_actions(s)
}

reasons contains sprintf("%s is a system administrator (%s)", [subject, via]) if {
	some via in admin_via
	some s in input.scopes
	some _ in admin_actions(s)
}

admin_actions(s) := {a | some a in repository_actions; wants(s, a)} if repository(s)

admin_actions(s) := {a | some a in s.actions} if s.type != "repository"

# Robots: exactly the requested actions that a declared scope covers (the
# name may be a glob: * within a path segment, ** across segments), and only
# on the robot's service when it is bound to one.
allowed contains {"type": s.type, "name": s.name, "action": a} if {
	some s in input.scopes
	some d in robot_scopes
	some a in robot_actions(s, d)
}

reasons contains sprintf("%s is a robot with the scope %s:%s:%s", [input.identity.subject, d.type, d.name, concat(",", d.actions)]) if {
	some s in input.scopes
	some d in robot_scopes
	some _ in robot_actions(s, d)
}

robot_scopes := input.identity.claims.robot.scopes if {
	robot
	object.get(input.identity.claims.robot, "service", "") in {"", input.service}
}

robot_actions(s, d) := {a |
	d.type == s.type
	glob.match(d.name, ["/"], s.name)
	some a in d.actions
	a != "*"
	wants(s, a)
}
