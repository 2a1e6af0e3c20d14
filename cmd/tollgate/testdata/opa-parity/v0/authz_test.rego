package registry.authz_test

import data.registry.authz

scopes := [{"type": "repository", "name": "a", "actions": ["pull", "push"]}]

test_admin_gets_everything {
	count(authz.allowed) == 2 with input as {"identity": {"subject": "alice"}, "scopes": scopes}
}

test_others_get_nothing {
	count(authz.allowed) == 0 with input as {"identity": {"subject": "bob"}, "scopes": scopes}
}

test_short_tokens_for_admins {
	authz.token_ttl == 60 with input as {"identity": {"subject": "root"}, "scopes": scopes}
}
