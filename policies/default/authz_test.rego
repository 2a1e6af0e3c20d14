package registry.authz_test

import data.registry.authz

fixture := {
	"system_admins": {"users": ["root"], "groups": ["ops"]},
	"projects": {
		"team": {
			"public": false,
			"members": {"alice": "developer", "bob": "guest", "dana": "admin", "mia": "maintainer"},
			"groups": {"dev": "developer", "qa": "guest"},
		},
		"library": {"public": true, "members": {"alice": "maintainer"}, "groups": {}},
		"bare": {},
	},
}

user(subject, groups) := {"subject": subject, "name": subject, "groups": groups, "connector": "local", "anonymous": false, "claims": {}}

anonymous := {"subject": "", "name": "", "groups": [], "connector": "anonymous", "anonymous": true, "claims": {}}

req(id, scopes) := {"service": "registry.test", "identity": id, "scopes": scopes, "client": {"ip": "127.0.0.1", "user_agent": "test"}}

repo(name, actions) := {"type": "repository", "name": name, "actions": actions}

# granted(in) is the set of "type:name:action" strings the policy allows.
granted(inp) := {sprintf("%s:%s:%s", [g.type, g.name, g.action]) |
	allowed := authz.allowed with input as inp with data.registry.projects as fixture.projects with data.registry.system_admins as fixture.system_admins
	some g in allowed
}

test_developer_pulls_and_pushes if {
	granted(req(user("alice", []), [repo("team/app", ["pull", "push", "delete"])])) == {"repository:team/app:pull", "repository:team/app:push"}
}

test_guest_only_pulls if {
	granted(req(user("bob", []), [repo("team/app", ["pull", "push"])])) == {"repository:team/app:pull"}
}

test_maintainer_pulls_and_pushes if {
	granted(req(user("mia", []), [repo("team/app", ["pull", "push", "delete"])])) == {"repository:team/app:pull", "repository:team/app:push"}
}

test_project_admin_deletes if {
	granted(req(user("dana", []), [repo("team/app", ["delete"])])) == {"repository:team/app:delete"}
}

test_user_without_role_gets_nothing if {
	granted(req(user("carol", []), [repo("team/app", ["pull", "push"])])) == set()
}

test_group_role if {
	granted(req(user("erin", ["dev"]), [repo("team/x", ["push"])])) == {"repository:team/x:push"}
}

test_member_and_group_roles_unite if {
	# bob is guest as a member and developer through the dev group.
	granted(req(user("bob", ["dev"]), [repo("team/app", ["pull", "push"])])) == {"repository:team/app:pull", "repository:team/app:push"}
}

test_anonymous_pulls_public_project if {
	granted(req(anonymous, [repo("library/hello", ["pull"])])) == {"repository:library/hello:pull"}
}

test_anonymous_cannot_push_public_project if {
	granted(req(anonymous, [repo("library/hello", ["pull", "push"])])) == {"repository:library/hello:pull"}
}

test_anonymous_gets_nothing_on_private_project if {
	granted(req(anonymous, [repo("team/app", ["pull"])])) == set()
}

test_anonymous_with_member_named_empty_gets_nothing if {
	data_with_empty := object.union(fixture, {"projects": {"team": {"members": {"": "admin"}}}})
	got := {g | some g in authz.allowed} with input as req(anonymous, [repo("team/app", ["pull"])])
		with data.registry.projects as data_with_empty.projects with data.registry.system_admins as data_with_empty.system_admins
	got == set()
}

test_anonymous_has_no_namespace if {
	granted(req(anonymous, [repo("/x", ["push"])])) == set()
}

test_user_owns_personal_namespace if {
	granted(req(user("carol", []), [repo("carol/tools", ["*"])])) == {"repository:carol/tools:pull", "repository:carol/tools:push", "repository:carol/tools:delete"}
}

test_user_does_not_own_other_namespace if {
	granted(req(user("carol", []), [repo("carolyn/tools", ["pull"]), repo("alice/x", ["pull"])])) == set()
}

test_namespace_is_not_a_prefix_match_of_project_name if {
	# "carol" does not own the repository "carol" (no slash) nor "carolx/y".
	granted(req(user("carol", []), [repo("carol", ["push"]), repo("carolx/y", ["push"])])) == set()
}

test_public_project_pull_for_authenticated_users if {
	granted(req(user("carol", []), [repo("library/hello", ["pull", "push"])])) == {"repository:library/hello:pull"}
}

test_maintainer_pushes_public_project if {
	granted(req(user("alice", []), [repo("library/hello", ["push"])])) == {"repository:library/hello:push"}
}

test_star_expands_to_role_actions if {
	granted(req(user("alice", []), [repo("team/app", ["*"])])) == {"repository:team/app:pull", "repository:team/app:push"}
	granted(req(user("bob", []), [repo("team/app", ["*"])])) == {"repository:team/app:pull"}
	granted(req(anonymous, [repo("library/x", ["*"])])) == {"repository:library/x:pull"}
}

test_star_is_never_granted_on_repositories if {
	every g in {g | some g in authz.allowed with input as req(user("root", []), [repo("team/app", ["*"])]) with data.registry.projects as fixture.projects with data.registry.system_admins as fixture.system_admins} {
		g.action != "*"
	}
}

test_system_admin_by_user if {
	granted(req(user("root", []), [repo("any/thing", ["pull", "push", "delete"])])) == {"repository:any/thing:pull", "repository:any/thing:push", "repository:any/thing:delete"}
}

test_system_admin_by_group_gets_catalog if {
	granted(req(user("ops-person", ["ops"]), [{"type": "registry", "name": "catalog", "actions": ["*"]}])) == {"registry:catalog:*"}
}

test_catalog_denied_to_others if {
	granted(req(user("alice", []), [{"type": "registry", "name": "catalog", "actions": ["*"]}])) == set()
	granted(req(anonymous, [{"type": "registry", "name": "catalog", "actions": ["*"]}])) == set()
}

test_anonymous_is_never_system_admin if {
	admins := object.union(fixture, {"system_admins": {"users": [""], "groups": []}})
	got := {g | some g in authz.allowed} with input as req(anonymous, [repo("team/app", ["pull"])])
		with data.registry.projects as admins.projects with data.registry.system_admins as admins.system_admins
	got == set()
}

test_unknown_project_denied if {
	granted(req(user("alice", []), [repo("nope/app", ["pull"])])) == set()
}

test_name_without_slash_is_its_own_project if {
	granted(req(user("alice", []), [repo("team", ["pull"])])) == {"repository:team:pull"}
}

test_project_without_members_denied if {
	granted(req(user("alice", []), [repo("bare/app", ["pull"])])) == set()
}

test_unrequested_actions_never_granted if {
	granted(req(user("dana", []), [repo("team/app", ["pull"])])) == {"repository:team/app:pull"}
}

test_multiple_scopes_decided_separately if {
	granted(req(user("alice", []), [repo("team/app", ["push"]), repo("library/base", ["pull"]), repo("other/x", ["pull"])])) == {"repository:team/app:push", "repository:library/base:pull"}
}

test_other_resource_types_denied_to_users if {
	granted(req(user("alice", []), [{"type": "repository(plugin)", "name": "team/app", "actions": ["pull"]}])) == set()
}

test_missing_data_denies if {
	got := {g | some g in authz.allowed} with input as req(user("alice", []), [repo("team/app", ["pull"])])
		with data.registry.projects as {} with data.registry.system_admins as {}
	got == set()
}

test_missing_groups_in_identity if {
	id := {"subject": "alice", "anonymous": false}
	granted(req(id, [repo("team/app", ["pull"])])) == {"repository:team/app:pull"}
}

test_reasons_explain_a_role if {
	r := authz.reasons with input as req(user("alice", []), [repo("team/app", ["pull"])]) with data.registry.projects as fixture.projects with data.registry.system_admins as fixture.system_admins
	"alice is developer in project team" in r
}

test_reasons_explain_public_and_admin if {
	r := authz.reasons with input as req(user("root", []), [repo("library/x", ["pull"])]) with data.registry.projects as fixture.projects with data.registry.system_admins as fixture.system_admins
	"project library is public: pull for everyone" in r
	"root is a system administrator" in r
}

test_reasons_explain_namespace if {
	r := authz.reasons with input as req(user("carol", []), [repo("carol/x", ["pull"])]) with data.registry.projects as fixture.projects with data.registry.system_admins as fixture.system_admins
	"carol owns the namespace carol/" in r
}
