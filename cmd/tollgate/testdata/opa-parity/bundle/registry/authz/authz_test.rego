package registry.authz_test

import data.registry.authz

test_anyone_pulls_public if {
	authz.allowed == {{"type": "repository", "name": "library/x", "action": "pull"}} with input as {
		"identity": {"anonymous": true, "subject": ""},
		"scopes": [{"type": "repository", "name": "library/x", "actions": ["pull", "push"]}],
	}
}

test_home_namespace if {
	count(authz.allowed) == 2 with input as {
		"identity": {"anonymous": false, "subject": "bob"},
		"scopes": [{"type": "repository", "name": "bob/x", "actions": ["pull", "push"]}],
	}
}

test_not_the_neighbours if {
	count(authz.allowed) == 0 with input as {
		"identity": {"anonymous": false, "subject": "bob"},
		"scopes": [{"type": "repository", "name": "alice/x", "actions": ["pull"]}],
	}
}
