# Unit tests of the default policy. Run with `tollgate policy test
# policies/default`, `opa test policies/default`, or `go test ./policies/`.
# Most tests use the fixture below; the tests named test_shipped_data_* read
# the example data.json that sits beside the policy.
package registry.authz_test

import data.registry.authz

# Fixtures.

projects := {
	"team": {
		"public": false,
		"members": {"alice": "developer", "bob": "guest", "dana": "admin", "mia": "maintainer", "odd": "owner"},
		"groups": {"dev": "developer", "qa": "guest", "leads": "admin"},
	},
	"library": {"public": true, "members": {"alice": "maintainer"}, "groups": {}},
	"stringly": {"public": "true", "members": {}, "groups": {}},
	"bare": {},
}

admins := {"users": ["root"], "groups": ["ops"]}

user(subject, groups) := {"subject": subject, "name": subject, "groups": groups, "connector": "local", "anonymous": false, "claims": {}}

anonymous := {"subject": "", "name": "", "groups": [], "connector": "anonymous", "anonymous": true, "claims": {}}

req(id, scopes) := {"service": "registry.test", "identity": id, "scopes": scopes, "client": {"ip": "127.0.0.1", "user_agent": "test"}}

repo(name, actions) := {"type": "repository", "name": name, "actions": actions}

catalog := {"type": "registry", "name": "catalog", "actions": ["*"]}

# decide_with(inp, p, a): the "type:name:action" strings allowed for inp over
# the projects p and the system admins a.
decide_with(inp, p, a) := {sprintf("%s:%s:%s", [g.type, g.name, g.action]) | some g in got} if {
	got := authz.allowed with input as inp with data.registry.projects as p with data.registry.system_admins as a
}

decide(inp) := decide_with(inp, projects, admins)

# ask(id, scopes): decide over the fixture.
ask(id, scopes) := decide(req(id, scopes))

reasons(inp) := r if {
	r := authz.reasons with input as inp with data.registry.projects as projects with data.registry.system_admins as admins
}

# Project roles.

test_developer_gets_pull_and_push_but_not_delete if {
	ask(user("alice", []), [repo("team/app", ["pull", "push", "delete"])]) == {"repository:team/app:pull", "repository:team/app:push"}
}

test_maintainer_gets_pull_and_push_but_not_delete if {
	ask(user("mia", []), [repo("team/app", ["pull", "push", "delete"])]) == {"repository:team/app:pull", "repository:team/app:push"}
}

test_guest_gets_only_pull if {
	ask(user("bob", []), [repo("team/app", ["pull", "push", "delete"])]) == {"repository:team/app:pull"}
}

test_project_admin_gets_pull_push_and_delete if {
	ask(user("dana", []), [repo("team/app", ["pull", "push", "delete"])]) == {"repository:team/app:pull", "repository:team/app:push", "repository:team/app:delete"}
}

test_unknown_role_grants_nothing if {
	ask(user("odd", []), [repo("team/app", ["*"])]) == set()
}

test_user_without_role_in_private_project_gets_nothing if {
	ask(user("carol", []), [repo("team/app", ["pull", "push", "delete"])]) == set()
}

test_role_applies_to_nested_repository_names if {
	ask(user("alice", []), [repo("team/a/b/c", ["push"])]) == {"repository:team/a/b/c:push"}
}

test_role_does_not_leak_to_project_with_similar_name if {
	ask(user("alice", []), [repo("teamx/app", ["pull"]), repo("tea/app", ["pull"])]) == set()
}

test_role_in_one_project_gives_nothing_in_another if {
	ask(user("dana", []), [repo("library/app", ["push", "delete"])]) == set()
}

# Groups.

test_group_role_grants_its_actions if {
	ask(user("erin", ["dev"]), [repo("team/x", ["pull", "push", "delete"])]) == {"repository:team/x:pull", "repository:team/x:push"}
}

test_group_admin_role_grants_delete if {
	ask(user("erin", ["leads"]), [repo("team/x", ["delete"])]) == {"repository:team/x:delete"}
}

test_unlisted_group_gets_nothing if {
	ask(user("erin", ["marketing"]), [repo("team/x", ["pull"])]) == set()
}

test_member_and_group_roles_unite if {
	# bob is a guest as a member and a developer through the group dev.
	ask(user("bob", ["dev"]), [repo("team/app", ["pull", "push", "delete"])]) == {"repository:team/app:pull", "repository:team/app:push"}
}

test_roles_of_several_groups_unite if {
	ask(user("erin", ["qa", "leads"]), [repo("team/app", ["*"])]) == {"repository:team/app:pull", "repository:team/app:push", "repository:team/app:delete"}
}

test_missing_groups_in_identity_still_uses_member_role if {
	ask({"subject": "alice", "anonymous": false}, [repo("team/app", ["pull", "push"])]) == {"repository:team/app:pull", "repository:team/app:push"}
}

test_null_groups_in_identity_still_uses_member_role if {
	ask({"subject": "bob", "anonymous": false, "groups": null}, [repo("team/app", ["pull", "push"])]) == {"repository:team/app:pull"}
}

# Public projects.

test_anonymous_pulls_public_project if {
	ask(anonymous, [repo("library/hello", ["pull"])]) == {"repository:library/hello:pull"}
}

test_anonymous_cannot_push_or_delete_public_project if {
	ask(anonymous, [repo("library/hello", ["pull", "push", "delete"])]) == {"repository:library/hello:pull"}
}

test_anonymous_asking_only_push_on_public_project_gets_nothing if {
	ask(anonymous, [repo("library/hello", ["push"])]) == set()
}

test_authenticated_non_member_pulls_public_project_only if {
	ask(user("carol", []), [repo("library/hello", ["pull", "push", "delete"])]) == {"repository:library/hello:pull"}
}

test_maintainer_pushes_public_project if {
	ask(user("alice", []), [repo("library/hello", ["pull", "push", "delete"])]) == {"repository:library/hello:pull", "repository:library/hello:push"}
}

test_public_must_be_boolean_true if {
	ask(anonymous, [repo("stringly/app", ["pull"])]) == set()
}

test_public_project_name_without_slash if {
	ask(anonymous, [repo("library", ["pull"])]) == {"repository:library:pull"}
}

# Anonymous callers and empty subjects.

test_anonymous_gets_nothing_on_private_project if {
	ask(anonymous, [repo("team/app", ["pull", "push", "delete", "*"])]) == set()
}

test_anonymous_never_matches_a_member_named_empty if {
	p := object.union(projects, {"team": {"members": {"": "admin"}}})
	decide_with(req(anonymous, [repo("team/app", ["pull"])]), p, admins) == set()
}

test_anonymous_never_gets_group_roles if {
	anon_with_groups := object.union(anonymous, {"groups": ["dev", "leads", "ops"]})
	ask(anon_with_groups, [repo("team/app", ["*"]), catalog]) == set()
}

test_anonymous_flag_wins_over_a_subject if {
	id := object.union(user("alice", ["dev"]), {"anonymous": true})
	ask(id, [repo("team/app", ["push"]), repo("alice/x", ["push"]), repo("library/x", ["pull"])]) == {"repository:library/x:pull"}
}

test_identity_without_anonymous_flag_is_not_authenticated if {
	ask({"subject": "alice"}, [repo("team/app", ["pull"]), repo("alice/x", ["pull"])]) == set()
}

test_empty_subject_is_not_authenticated_even_if_not_anonymous if {
	p := object.union(projects, {"team": {"members": {"": "admin"}}})
	decide_with(req(user("", ["dev"]), [repo("team/app", ["pull"]), repo("/x", ["push"])]), p, {"users": [""], "groups": []}) == set()
}

test_non_string_subject_is_not_authenticated if {
	ask({"subject": 7, "anonymous": false}, [repo("7/x", ["push"])]) == set()
}

test_anonymous_has_no_personal_namespace if {
	ask(anonymous, [repo("/x", ["pull", "push"]), repo("x", ["push"])]) == set()
}

test_anonymous_is_never_system_admin if {
	decide_with(req(anonymous, [repo("team/app", ["pull"]), catalog]), projects, {"users": [""], "groups": [""]}) == set()
}

test_missing_identity_gets_only_public_pull if {
	decide({"scopes": [repo("team/app", ["pull"]), repo("library/x", ["pull", "push"])]}) == {"repository:library/x:pull"}
}

# Personal namespaces.

test_user_owns_personal_namespace if {
	ask(user("carol", []), [repo("carol/tools", ["pull", "push", "delete"])]) == {"repository:carol/tools:pull", "repository:carol/tools:push", "repository:carol/tools:delete"}
}

test_user_owns_nested_repositories_of_personal_namespace if {
	ask(user("carol", []), [repo("carol/a/b", ["delete"])]) == {"repository:carol/a/b:delete"}
}

test_user_does_not_own_another_users_namespace if {
	ask(user("carol", []), [repo("alice/x", ["pull", "push", "delete"]), repo("carolyn/tools", ["pull"])]) == set()
}

test_personal_namespace_needs_the_slash if {
	# carol owns neither the repository "carol" nor "carolx/y".
	ask(user("carol", []), [repo("carol", ["pull", "push"]), repo("carolx/y", ["push"])]) == set()
}

test_user_named_like_a_project_does_not_own_it if {
	ask(user("library", []), [repo("library/hello", ["pull", "push", "delete"])]) == {"repository:library/hello:pull"}
	ask(user("team", []), [repo("team/app", ["pull"])]) == set()
	ask(user("bare", []), [repo("bare/app", ["push"])]) == set()
}

# A subject with "/" has no personal namespace: "team/ci" is not a member of
# the private project "team" and must get nothing in it; "library/mirror"
# must not push into the public "library" (issue 14, finding 2).
test_subject_with_slash_gets_nothing_in_a_private_project if {
	ask(user("team/ci", []), [repo("team/ci/app", ["pull", "push", "delete"]), repo("team/ci", ["pull", "push"])]) == set()
}

test_subject_with_slash_gets_only_public_pull if {
	ask(user("library/mirror", []), [repo("library/mirror/x", ["pull", "push", "delete"])]) == {"repository:library/mirror/x:pull"}
}

test_subject_with_slash_gets_nothing_outside_any_project if {
	ask(user("a/b", []), [repo("a/b/c", ["*"]), repo("a/b", ["push"])]) == set()
	decide_with(req(user("a/b", []), [repo("a/b/c", ["push"])]), {}, {}) == set()
}

test_subject_with_slash_keeps_its_project_roles if {
	p := {"team": {"members": {"team/ci": "developer"}}}
	decide_with(req(user("team/ci", []), [repo("team/ci/app", ["pull", "push", "delete"])]), p, {}) == {"repository:team/ci/app:pull", "repository:team/ci/app:push"}
}

# Only a subject that can be a repository path component (lower case
# letters, digits, and ".", "_", "__" or "-" between them) has a personal
# namespace, and only its exact self: no case folding, no dot segments, no
# glob or path syntax.
test_uppercase_subject_does_not_own_the_lowercase_namespace if {
	ask(user("Carol", []), [repo("carol/x", ["pull", "push"]), repo("Carol/x", ["push"])]) == set()
}

test_dot_segment_subjects_have_no_namespace if {
	ask(user("..", []), [repo("../x", ["push"]), repo("../team/app", ["push"])]) == set()
	ask(user(".", []), [repo("./x", ["push"])]) == set()
}

test_odd_subjects_have_no_namespace if {
	every s in ["*", "-x", "x-", "a..b", "a b", "a:b", "@x", "x/"] {
		ask(user(s, []), [repo(concat("", [s, "/app"]), ["push"])]) == set()
	}
}

test_path_component_subjects_own_their_namespace if {
	every s in ["carol", "c0", "carol.smith", "carol_smith", "carol__smith", "carol--smith", "7"] {
		name := concat("", [s, "/app"])
		ask(user(s, []), [repo(name, ["push"])]) == {sprintf("repository:%s:push", [name])}
	}
}

test_personal_namespace_works_without_any_project_data if {
	decide_with(req(user("carol", []), [repo("carol/x", ["push"])]), {}, {}) == {"repository:carol/x:push"}
}

# System administrators.

test_system_admin_by_user_gets_every_repository_action if {
	ask(user("root", []), [repo("team/app", ["pull", "push", "delete"])]) == {"repository:team/app:pull", "repository:team/app:push", "repository:team/app:delete"}
}

test_system_admin_by_group_gets_every_repository_action if {
	ask(user("erin", ["ops"]), [repo("library/x", ["pull", "push", "delete"])]) == {"repository:library/x:pull", "repository:library/x:push", "repository:library/x:delete"}
}

test_system_admin_gets_repositories_outside_any_project if {
	ask(user("root", []), [repo("nowhere/app", ["delete"]), repo("single", ["push"]), repo("bob/x", ["pull"])]) == {"repository:nowhere/app:delete", "repository:single:push", "repository:bob/x:pull"}
}

test_system_admin_by_user_gets_catalog if {
	ask(user("root", []), [catalog]) == {"registry:catalog:*"}
}

test_system_admin_by_group_gets_catalog if {
	ask(user("erin", ["dev", "ops"]), [catalog]) == {"registry:catalog:*"}
}

test_system_admin_gets_requested_actions_literally_on_other_types if {
	ask(user("root", []), [{"type": "plugin", "name": "x", "actions": ["pull", "*", "frob"]}]) == {"plugin:x:pull", "plugin:x:*", "plugin:x:frob"}
}

test_system_admin_gets_nothing_unrequested_on_other_types if {
	ask(user("root", []), [{"type": "registry", "name": "catalog", "actions": []}]) == set()
}

test_catalog_denied_to_everyone_else if {
	ask(user("alice", ["dev"]), [catalog]) == set()
	ask(user("dana", ["leads"]), [catalog]) == set()
	ask(anonymous, [catalog]) == set()
}

test_other_resource_types_denied_to_non_admins if {
	ask(user("dana", []), [{"type": "plugin", "name": "team/app", "actions": ["pull"]}]) == set()
	ask(user("carol", []), [{"type": "plugin", "name": "carol/x", "actions": ["pull"]}]) == set()
	ask(anonymous, [{"type": "plugin", "name": "library/x", "actions": ["pull"]}]) == set()
}

test_system_admin_lists_are_exact_matches if {
	ask(user("roo", ["op", "ops-team"]), [repo("team/app", ["pull"]), catalog]) == set()
}

# "*" expansion.

test_star_expands_to_the_actions_of_each_role if {
	ask(user("dana", []), [repo("team/app", ["*"])]) == {"repository:team/app:pull", "repository:team/app:push", "repository:team/app:delete"}
	ask(user("mia", []), [repo("team/app", ["*"])]) == {"repository:team/app:pull", "repository:team/app:push"}
	ask(user("alice", []), [repo("team/app", ["*"])]) == {"repository:team/app:pull", "repository:team/app:push"}
	ask(user("bob", []), [repo("team/app", ["*"])]) == {"repository:team/app:pull"}
	ask(user("carol", []), [repo("team/app", ["*"])]) == set()
}

test_star_expands_for_public_owner_and_admin if {
	ask(anonymous, [repo("library/x", ["*"])]) == {"repository:library/x:pull"}
	ask(user("carol", []), [repo("carol/x", ["*"])]) == {"repository:carol/x:pull", "repository:carol/x:push", "repository:carol/x:delete"}
	ask(user("root", []), [repo("team/app", ["*"])]) == {"repository:team/app:pull", "repository:team/app:push", "repository:team/app:delete"}
}

test_star_beside_named_actions_is_the_union if {
	ask(user("bob", []), [repo("team/app", ["push", "*"])]) == {"repository:team/app:pull"}
}

test_star_is_never_granted_on_repositories if {
	callers := [user("root", []), user("dana", []), user("carol", []), anonymous]
	every id in callers {
		every g in ask(id, [repo("team/app", ["*"]), repo("carol/x", ["*"]), repo("library/x", ["*"])]) {
			not endswith(g, ":*")
		}
	}
}

# Requests.

test_unrequested_actions_are_never_granted if {
	ask(user("dana", []), [repo("team/app", ["pull"])]) == {"repository:team/app:pull"}
	ask(user("root", []), [repo("team/app", ["delete"])]) == {"repository:team/app:delete"}
	ask(user("carol", []), [repo("carol/x", ["push"])]) == {"repository:carol/x:push"}
}

test_unknown_actions_are_never_granted_on_repositories if {
	ask(user("root", []), [repo("team/app", ["frob", "Pull"])]) == set()
}

test_empty_actions_grant_nothing if {
	ask(user("root", []), [repo("team/app", [])]) == set()
}

test_missing_actions_grant_nothing if {
	ask(user("root", []), [{"type": "repository", "name": "team/app"}]) == set()
}

test_no_scopes_grant_nothing if {
	ask(user("root", []), []) == set()
	decide({"identity": user("root", [])}) == set()
}

test_non_string_repository_name_is_ignored if {
	ask(user("root", []), [{"type": "repository", "name": 5, "actions": ["pull"]}, repo("team/app", ["pull"])]) == {"repository:team/app:pull"}
}

test_unknown_project_denied if {
	ask(user("alice", ["dev"]), [repo("nope/app", ["pull"])]) == set()
}

test_name_without_slash_is_its_own_project if {
	ask(user("alice", []), [repo("team", ["pull", "push", "delete"])]) == {"repository:team:pull", "repository:team:push"}
}

test_multiple_scopes_are_decided_separately if {
	got := ask(user("alice", []), [
		repo("team/app", ["push"]),
		repo("library/base", ["pull", "delete"]),
		repo("other/x", ["pull"]),
		repo("alice/mine", ["delete"]),
		catalog,
	])
	got == {"repository:team/app:push", "repository:library/base:pull", "repository:alice/mine:delete"}
}

test_same_repository_in_two_scopes_unites_the_requests if {
	ask(user("bob", []), [repo("team/app", ["push"]), repo("team/app", ["pull"])]) == {"repository:team/app:pull"}
}

# Missing or partial data.

test_empty_data_denies_everything if {
	decide_with(req(user("alice", ["dev", "registry-admins"]), [repo("team/app", ["pull"]), repo("library/x", ["pull"]), catalog]), {}, {}) == set()
}

test_null_data_denies if {
	decide_with(req(user("root", ["ops"]), [repo("team/app", ["pull"]), catalog]), null, null) == set()
}

test_project_without_members_or_groups_denies if {
	ask(user("alice", ["dev"]), [repo("bare/app", ["pull"])]) == set()
}

test_null_members_and_groups_deny if {
	p := {"team": {"public": false, "members": null, "groups": null}}
	decide_with(req(user("alice", ["dev"]), [repo("team/app", ["pull"])]), p, admins) == set()
}

test_system_admins_without_users_still_match_groups if {
	decide_with(req(user("erin", ["ops"]), [catalog]), projects, {"groups": ["ops"]}) == {"registry:catalog:*"}
	decide_with(req(user("root", []), [catalog]), projects, {"groups": ["ops"]}) == set()
}

test_system_admins_without_groups_still_match_users if {
	decide_with(req(user("root", ["ops"]), [catalog]), projects, {"users": ["root"]}) == {"registry:catalog:*"}
	decide_with(req(user("erin", ["ops"]), [catalog]), projects, {"users": ["root"]}) == set()
}

# Reasons.

test_reason_names_a_member_role if {
	"alice is developer in project team (member)" in reasons(req(user("alice", []), [repo("team/app", ["pull"])]))
}

test_reason_names_a_group_role if {
	"erin is guest in project team (group qa)" in reasons(req(user("erin", ["qa"]), [repo("team/app", ["pull"])]))
}

test_reason_names_a_public_project if {
	reasons(req(anonymous, [repo("library/x", ["pull"])])) == {"project library is public: pull for everyone"}
}

test_reason_names_a_personal_namespace if {
	reasons(req(user("carol", []), [repo("carol/x", ["pull"])])) == {"carol owns the namespace carol/"}
}

test_reason_names_a_system_admin_by_user_and_by_group if {
	reasons(req(user("root", ["ops"]), [catalog])) == {"root is a system administrator (user)", "root is a system administrator (group ops)"}
}

test_reasons_explain_only_grants if {
	reasons(req(user("carol", []), [repo("team/app", ["pull"])])) == set()
	reasons(req(anonymous, [repo("library/x", ["push"])])) == set()
	reasons(req(user("alice", []), [repo("team/app", ["pull"])])) == {"alice is developer in project team (member)"}
}

# The shipped example data (data.json beside the policy).

test_shipped_data_alice_develops_team_and_maintains_library if {
	got := {sprintf("%s:%s", [g.name, g.action]) | some g in authz.allowed} with input as req(user("alice", []), [repo("team/app", ["*"]), repo("library/x", ["*"])])
	got == {"team/app:pull", "team/app:push", "library/x:pull", "library/x:push"}
}

test_shipped_data_bob_is_guest_in_team if {
	got := {g.action | some g in authz.allowed} with input as req(user("bob", []), [repo("team/app", ["*"])])
	got == {"pull"}
}

test_shipped_data_group_dev_develops_team if {
	got := {g.action | some g in authz.allowed} with input as req(user("erin", ["dev"]), [repo("team/app", ["*"])])
	got == {"pull", "push"}
}

test_shipped_data_anonymous_pulls_library_only if {
	got := {g.name | some g in authz.allowed} with input as req(anonymous, [repo("team/app", ["pull"]), repo("library/x", ["pull"])])
	got == {"library/x"}
}

test_shipped_data_admin_user_and_group_get_catalog if {
	by_user := authz.allowed with input as req(user("admin", []), [catalog])
	by_user == {{"type": "registry", "name": "catalog", "action": "*"}}
	by_group := authz.allowed with input as req(user("erin", ["registry-admins"]), [catalog])
	by_group == {{"type": "registry", "name": "catalog", "action": "*"}}
}

# Robots: at most their declared scopes.

robot_id(scopes, service) := {
	"subject": "robot-team-ci", "name": "team CI", "groups": [], "connector": "robot", "anonymous": false,
	"claims": {"robot": {"name": "team-ci", "scopes": scopes, "service": service}},
}

team_push := {"type": "repository", "name": "team/*", "actions": ["pull", "push"]}

test_robot_gets_its_declared_scope if {
	got := decide(req(robot_id([team_push], ""), [repo("team/app", ["pull", "push", "delete"])]))
	got == {"repository:team/app:pull", "repository:team/app:push"}
}

test_robot_star_expands_within_its_scope if {
	got := decide(req(robot_id([team_push], ""), [repo("team/app", ["*"])]))
	got == {"repository:team/app:pull", "repository:team/app:push"}
}

test_robot_glob_stays_in_its_segment if {
	got := decide(req(robot_id([team_push], ""), [repo("team/a/b", ["pull"]), repo("teamx/app", ["pull"]), repo("other/app", ["pull"])]))
	got == set()
}

test_robot_double_star_crosses_segments if {
	deep := {"type": "repository", "name": "team/**", "actions": ["pull"]}
	got := decide(req(robot_id([deep], ""), [repo("team/a/b", ["pull", "push"])]))
	got == {"repository:team/a/b:pull"}
}

test_robot_gets_no_public_pull_or_membership_outside_its_scope if {
	# library is public and robot-team-ci is made a member of secret: neither counts.
	projects := {
		"library": {"public": true, "members": {}, "groups": {}},
		"secret": {"public": false, "members": {"robot-team-ci": "admin"}, "groups": {}},
	}
	admins := {"users": ["robot-team-ci"], "groups": []}
	got := decide_with(req(robot_id([team_push], ""), [repo("library/x", ["pull"]), repo("secret/x", ["pull"]), repo("robot-team-ci/x", ["pull"]), catalog]), projects, admins)
	got == set()
}

test_robot_bound_to_a_service if {
	decide(req(robot_id([team_push], "registry.test"), [repo("team/app", ["pull"])])) == {"repository:team/app:pull"}
	decide(req(robot_id([team_push], "other.registry"), [repo("team/app", ["pull"])])) == set()
}

test_robot_declared_star_is_never_granted_literally if {
	star := {"type": "repository", "name": "team/*", "actions": ["*"]}
	decide(req(robot_id([star], ""), [repo("team/app", ["*"])])) == set()
}

test_robot_reason if {
	reasons := authz.reasons with input as req(robot_id([team_push], ""), [repo("team/app", ["pull"])])
	reasons == {"robot-team-ci is a robot with the scope repository:team/*:pull,push"}
}
