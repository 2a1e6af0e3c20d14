package registry.authz_test

import data.registry.authz

test_public_pull if {
	authz.allowed == {{"type": "repository", "name": "public/x", "action": "pull"}} with input as {"scopes": [{"type": "repository", "name": "public/x", "actions": ["pull"]}]}
}

# Fails on purpose: the policy never grants push on public/.
test_public_push_fails_on_purpose if {
	authz.allowed == {{"type": "repository", "name": "public/x", "action": "push"}} with input as {"scopes": [{"type": "repository", "name": "public/x", "actions": ["push"]}]}
}

# Errors on purpose: two different values for one rule are an evaluation
# error (eval_conflict_error), reported as ERROR, not FAIL.
conflict := 1 if input.service

conflict := 2 if input.service

test_error_on_purpose if {
	conflict == 1 with input as {"service": "registry.example.com"}
}

# Skipped on purpose: todo_ tests are reported, never run.
todo_test_skipped_on_purpose if {
	false
}
