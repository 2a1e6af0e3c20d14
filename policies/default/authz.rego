# The default tollgate policy: project roles in the manner of Harbor.
#
# - The project of a repository is the first segment of its name.
# - data.registry.projects[P].members[user] and .groups[group] give roles:
#   admin: pull, push, delete; maintainer and developer: pull, push; guest: pull.
# - A public project gives pull to everyone, anonymous callers included.
# - Every authenticated user owns the namespace <subject>/.
# - System administrators (data.registry.system_admins.users / .groups) get
#   pull, push and delete on every repository and * on registry:catalog.
# - Everyone else gets nothing.
#
# A requested action "*" stands for every action the caller holds; the policy
# answers with the concrete actions, never with "*" for a repository.
package registry.authz

role_actions := {
	"admin": {"pull", "push", "delete"},
	"maintainer": {"pull", "push"},
	"developer": {"pull", "push"},
	"guest": {"pull"},
}

repository_actions := {"pull", "push", "delete"}

authenticated if {
	not input.identity.anonymous
	input.identity.subject != ""
}

system_admin if {
	authenticated
	input.identity.subject in data.registry.system_admins.users
}

system_admin if {
	authenticated
	some g in input.identity.groups
	g in data.registry.system_admins.groups
}

# wants(s, a): the scope s asks for action a, itself or through "*".
wants(s, a) if a in s.actions

wants(s, a) if {
	"*" in s.actions
	a != "*"
}

project_of(name) := split(name, "/")[0]

# roles[[name, role]]: the caller's roles in the project of repository name.
roles contains [s.name, role] if {
	authenticated
	some s in input.scopes
	s.type == "repository"
	role := data.registry.projects[project_of(s.name)].members[input.identity.subject]
}

roles contains [s.name, role] if {
	authenticated
	some s in input.scopes
	s.type == "repository"
	some g in input.identity.groups
	role := data.registry.projects[project_of(s.name)].groups[g]
}

# Project roles.
allowed contains {"type": "repository", "name": s.name, "action": a} if {
	some s in input.scopes
	s.type == "repository"
	some [name, role] in roles
	name == s.name
	some a in role_actions[role]
	wants(s, a)
}

# Public projects: pull for everyone.
allowed contains {"type": "repository", "name": s.name, "action": "pull"} if {
	some s in input.scopes
	s.type == "repository"
	data.registry.projects[project_of(s.name)].public == true
	wants(s, "pull")
}

# Personal namespaces: <subject>/...
allowed contains {"type": "repository", "name": s.name, "action": a} if {
	authenticated
	some s in input.scopes
	s.type == "repository"
	startswith(s.name, concat("", [input.identity.subject, "/"]))
	some a in repository_actions
	wants(s, a)
}

# System administrators: everything on repositories.
allowed contains {"type": "repository", "name": s.name, "action": a} if {
	system_admin
	some s in input.scopes
	s.type == "repository"
	some a in repository_actions
	wants(s, a)
}

# System administrators: every requested action on other resources, "*"
# included (the catalog is asked for as registry:catalog:*).
allowed contains {"type": s.type, "name": s.name, "action": a} if {
	system_admin
	some s in input.scopes
	s.type != "repository"
	some a in s.actions
}

reasons contains sprintf("%s is %s in project %s", [input.identity.subject, role, project_of(name)]) if {
	some [name, role] in roles
}

reasons contains sprintf("project %s is public: pull for everyone", [project_of(s.name)]) if {
	some s in input.scopes
	s.type == "repository"
	data.registry.projects[project_of(s.name)].public == true
}

reasons contains sprintf("%s owns the namespace %s/", [input.identity.subject, input.identity.subject]) if {
	authenticated
	some s in input.scopes
	s.type == "repository"
	startswith(s.name, concat("", [input.identity.subject, "/"]))
}

reasons contains sprintf("%s is a system administrator", [input.identity.subject]) if system_admin
