package registry.authz_test

import data.registry.authz

user(subject, groups) := {"subject": subject, "name": subject, "groups": groups, "connector": "local", "anonymous": false, "claims": {}}

req(id, scopes) := {"service": "registry.test", "identity": id, "scopes": scopes, "client": {"ip": "127.0.0.1", "user_agent": "test"}}

repo(name, actions) := {"type": "repository", "name": name, "actions": actions}

decide(inp) := {sprintf("%s:%s", [g.name, g.action]) | some g in authz.allowed with input as inp}

test_grants_without_denials if {
	decide(req(user("alice", []), [repo("team/app", ["*"])])) == {"team/app:pull", "team/app:push", "team/app:delete"}
	decide(req(user("erin", ["dev"]), [repo("team/app", ["pull", "push"])])) == {"team/app:pull", "team/app:push"}
}

test_a_denied_user_gets_nothing_whatever_the_roles if {
	decide(req(user("mallory", []), [repo("team/app", ["pull", "push"])])) == set()
}

test_a_denied_group_wins_over_another_group if {
	decide(req(user("erin", ["dev", "contractors"]), [repo("team/app", ["pull"])])) == set()
}

test_repository_pattern_removes_actions_for_everyone if {
	decide(req(user("alice", []), [repo("legacy/a/b", ["*"])])) == {"legacy/a/b:pull"}
}

test_single_segment_pattern if {
	decide(req(user("alice", []), [repo("team/release-1", ["delete", "push"]), repo("team/release-1/x", ["delete"])])) == {
		"team/release-1:push", "team/release-1/x:delete",
	}
}

test_nobody_else_gets_anything if {
	decide(req(user("carol", []), [repo("team/app", ["pull"])])) == set()
	decide(req({"subject": "", "name": "", "groups": [], "connector": "anonymous", "anonymous": true, "claims": {}}, [repo("team/app", ["pull"])])) == set()
}

test_only_repositories_are_granted if {
	count(authz.allowed) == 0 with input as req(user("alice", []), [{"type": "registry", "name": "catalog", "actions": ["*"]}])
}

test_reasons_name_the_denial if {
	authz.reasons == {`delete on legacy/x is denied by "legacy/**"`, `push on legacy/x is denied by "legacy/**"`} with input as req(user("alice", []), [repo("legacy/x", ["*"])])
	authz.reasons == {"user mallory is on the deny list"} with input as req(user("mallory", []), [repo("team/x", ["pull"])])
	authz.reasons == {"group contractors is on the deny list"} with input as req(user("erin", ["dev", "contractors"]), [repo("team/x", ["pull"])])
}
