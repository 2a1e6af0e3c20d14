package registry.authz_test

import data.registry.authz

test_users_pull if {
	authz.allowed == {{"type": "repository", "name": "a", "action": "pull"}} with input as {
		"identity": {"anonymous": false},
		"scopes": [{"type": "repository", "name": "a", "actions": ["pull"]}],
	}
}

todo_test_robots_push if {
	print("not written yet")
	false
}
