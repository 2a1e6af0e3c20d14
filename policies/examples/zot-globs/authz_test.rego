package registry.authz_test

import data.registry.authz

user(subject, groups) := {"subject": subject, "name": subject, "groups": groups, "connector": "local", "anonymous": false, "claims": {}}

anonymous := {"subject": "", "name": "", "groups": [], "connector": "anonymous", "anonymous": true, "claims": {}}

req(id, scopes) := {"service": "registry.test", "identity": id, "scopes": scopes, "client": {"ip": "127.0.0.1", "user_agent": "test"}}

repo(name, actions) := {"type": "repository", "name": name, "actions": actions}

# decide(inp): the "name:action" strings allowed over the shipped data.json.
decide(inp) := {sprintf("%s:%s", [g.name, g.action]) | some g in authz.allowed with input as inp}

# decide_with(inp, zot): the same over another accessControl section.
decide_with(inp, zot) := {sprintf("%s:%s", [g.name, g.action]) | some g in authz.allowed with input as inp with data.registry.zot as zot}

test_named_user_on_a_pattern if {
	decide(req(user("alice", []), [repo("team/app", ["pull", "push", "delete"])])) == {"team/app:pull", "team/app:push"}
}

test_identity_group_on_a_pattern if {
	decide(req(user("erin", ["dev"]), [repo("team/a/b", ["*"])])) == {"team/a/b:pull", "team/a/b:push"}
}

test_config_group_on_a_pattern if {
	# frank is in the group dev by the config's "groups", not by his identity.
	decide(req(user("frank", []), [repo("team/app", ["pull", "push"])])) == {"team/app:pull", "team/app:push"}
}

test_the_longest_pattern_decides if {
	# team/secret/* gives alice read only, although team/** gives her create.
	decide(req(user("alice", []), [repo("team/secret/x", ["pull", "push"])])) == {"team/secret/x:pull"}

	# and nobody else gets anything there, not even team/**'s group dev.
	decide(req(user("erin", ["dev"]), [repo("team/secret/x", ["pull"])])) == set()
}

test_star_stays_in_its_segment if {
	# team/secret/x/y is not matched by team/secret/*: team/** decides.
	decide(req(user("alice", []), [repo("team/secret/x/y", ["push"])])) == {"team/secret/x/y:push"}
}

test_default_policy_for_authenticated_users if {
	decide(req(user("bob", []), [repo("other/app", ["pull", "push"]), repo("team/app", ["pull"])])) == {"other/app:pull"}
}

test_home_namespace_for_every_user if {
	decide(req(user("bob", []), [repo("bob/tools/x", ["*"])])) == {"bob/tools/x:pull", "bob/tools/x:push", "bob/tools/x:delete"}
	decide(req(user("bob", []), [repo("carol/x", ["push", "pull"])])) == {"carol/x:pull"}
}

# "${subject}" expands only to a subject that is one path component: not to
# "team/ci" (team/ci/** would beat team/** inside team), nor to glob syntax
# ("*/**" would beat "**" everywhere, "{team,x}/**" would beat team/**).
test_subject_with_slash_has_no_home_namespace if {
	decide(req(user("team/ci", []), [repo("team/ci/app", ["*"])])) == set()
	decide(req(user("public/ci", []), [repo("public/ci/x", ["*"])])) == {"public/ci/x:pull"}
}

test_subject_with_glob_syntax_has_no_home_namespace if {
	decide(req(user("*", []), [repo("other/x", ["*"])])) == {"other/x:pull"}
	decide(req(user("{team,other}", []), [repo("team/app", ["*"])])) == set()
	decide(req(user("**", []), [repo("x/y", ["push"])])) == set()
}

test_uppercase_subject_has_no_home_namespace if {
	decide(req(user("Bob", []), [repo("Bob/x", ["push"]), repo("bob/x", ["push"])])) == set()
}

test_anonymous_callers if {
	decide(req(anonymous, [repo("public/x", ["pull", "push"]), repo("other/x", ["pull"]), repo("team/x", ["pull"])])) == {"public/x:pull"}
}

test_anonymous_never_matches_a_home_pattern if {
	decide(req(anonymous, [repo("${subject}/x", ["pull"])])) == set()
}

test_admin_everywhere if {
	decide(req(user("admin", []), [repo("team/secret/x", ["delete"])])) == {"team/secret/x:delete"}
	decide(req(user("erin", ["registry-admins"]), [repo("any/x", ["push"])])) == {"any/x:push"}
}

test_actions_map_to_registry_actions if {
	zot := {"repositories": {"**": {"policies": [
		{"users": ["u"], "actions": ["update"]},
		{"users": ["c"], "actions": ["read", "create"]},
		{"users": ["d"], "actions": ["delete", "detectManifestCollision"]},
	]}}}

	# update alone (overwrite a tag) cannot be told apart from a push: nothing.
	decide_with(req(user("u", []), [repo("x", ["*"])]), zot) == set()
	decide_with(req(user("c", []), [repo("x", ["*"])]), zot) == {"x:pull", "x:push"}

	# actions that are not about tokens are ignored.
	decide_with(req(user("d", []), [repo("x", ["*"])]), zot) == {"x:delete"}
}

test_no_pattern_matches_gives_only_admin_actions if {
	zot := {"repositories": {"x/*": {"defaultPolicy": ["read"]}}, "adminPolicy": {"users": ["root"], "actions": ["read"]}}
	decide_with(req(user("alice", []), [repo("team/app", ["pull"])]), zot) == set()
	decide_with(req(user("root", []), [repo("team/app", ["pull"])]), zot) == {"team/app:pull"}
}

test_other_resource_types_are_not_granted if {
	count(authz.allowed) == 0 with input as req(user("admin", []), [{"type": "registry", "name": "catalog", "actions": ["*"]}])
}

test_reasons_name_the_pattern if {
	reasons := authz.reasons with input as req(user("admin", []), [repo("team/secret/x", ["pull"])])
	reasons == {`team/secret/x: the longest matching pattern is "team/secret/*"`, "the caller is in adminPolicy"}

	none := authz.reasons with input as req(user("bob", []), [repo("x", ["pull"])])
		with data.registry.zot as {"repositories": {"y/**": {}}, "adminPolicy": {}}
	none == {"x: no pattern matches"}
}
