package registry.authz_test

import data.registry.authz

scope(name) := [{"type": "repository", "name": name, "actions": ["pull", "push", "delete"]}]

actions(user, name) := a if {
	a := {g.action | some g in authz.allowed} with input as {"identity": {"subject": user}, "scopes": scope(name)}
}

test_members_push if actions("bob", "web/app") == {"pull", "push"}

test_owners_delete if actions("alice", "web/app") == {"pull", "push", "delete"}

test_others_get_nothing if actions("carol", "web/app") == set()

test_owner_of_another_team_only_deletes if actions("carol", "ops/app") == {"pull", "push", "delete"}
