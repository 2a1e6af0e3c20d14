package registry.authz_test

import data.registry.authz

test_public_pull if {
	authz.allowed == {{"type": "repository", "name": "public/x", "action": "pull"}} with input as {"scopes": [{"type": "repository", "name": "public/x", "actions": ["pull"]}]}
}

# Fails on purpose: the policy never grants push on public/.
test_public_push_fails_on_purpose if {
	authz.allowed == {{"type": "repository", "name": "public/x", "action": "push"}} with input as {"scopes": [{"type": "repository", "name": "public/x", "actions": ["push"]}]}
}

# Errors on purpose: a division by zero at evaluation time.
test_error_on_purpose if {
	input.a / input.b == 1 with input as {"a": 1, "b": 0}
}
