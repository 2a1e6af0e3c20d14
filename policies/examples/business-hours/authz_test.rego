package registry.authz_test

import data.registry.authz

# Wednesday 2026-11-25 10:00 and 22:00 in Paris (UTC+1), and a Sunday noon.
wednesday_10 := time.parse_rfc3339_ns("2026-11-25T09:00:00Z")

wednesday_22 := time.parse_rfc3339_ns("2026-11-25T21:00:00Z")

sunday_noon := time.parse_rfc3339_ns("2026-11-29T11:00:00Z")

user(subject, ip) := {
	"service": "registry.test",
	"identity": {"subject": subject, "name": subject, "groups": [], "connector": "local", "anonymous": false, "claims": {}},
	"scopes": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}],
	"client": {"ip": ip, "user_agent": "test"},
}

actions(inp, now) := {g.action | some g in authz.allowed with input as inp with time.now_ns as now}

test_writer_pushes_during_business_hours if {
	actions(user("alice", "203.0.113.9"), wednesday_10) == {"pull", "push"}
}

test_writer_is_read_only_at_night_from_outside if {
	actions(user("alice", "203.0.113.9"), wednesday_22) == {"pull"}
}

test_writer_is_read_only_on_sunday_from_outside if {
	actions(user("alice", "203.0.113.9"), sunday_noon) == {"pull"}
}

test_writer_pushes_at_night_from_the_office if {
	actions(user("alice", "10.20.30.40"), wednesday_22) == {"pull", "push"}
	actions(user("alice", "192.168.10.7"), sunday_noon) == {"pull", "push"}
}

test_non_writer_only_pulls_even_in_the_office if {
	actions(user("carol", "10.20.30.40"), wednesday_10) == {"pull"}
}

test_anonymous_gets_nothing if {
	inp := json.patch(user("", "10.0.0.1"), [{"op": "replace", "path": "/identity/anonymous", "value": true}])
	actions(inp, wednesday_10) == set()
}

test_star_expands_to_the_actions_held if {
	inp := json.patch(user("alice", "203.0.113.9"), [{"op": "replace", "path": "/scopes/0/actions", "value": ["*"]}])
	actions(inp, wednesday_10) == {"pull", "push"}
}

test_reason_at_night if {
	reasons := authz.reasons with input as user("alice", "203.0.113.9") with time.now_ns as wednesday_22
	reasons == {"outside business hours and outside the trusted networks: read-only"}
}

test_hours_are_counted_in_the_configured_time_zone if {
	# 07:30 and 17:30 UTC are 08:30 (open) and 18:30 (closed) in Paris.
	actions(user("alice", "203.0.113.9"), time.parse_rfc3339_ns("2026-11-25T07:30:00Z")) == {"pull", "push"}
	actions(user("alice", "203.0.113.9"), time.parse_rfc3339_ns("2026-11-25T17:30:00Z")) == {"pull"}

	# the boundaries: from is included, to is not.
	actions(user("alice", "203.0.113.9"), time.parse_rfc3339_ns("2026-11-25T06:59:59Z")) == {"pull"}
	actions(user("alice", "203.0.113.9"), time.parse_rfc3339_ns("2026-11-25T07:00:00Z")) == {"pull", "push"}
}

test_an_ipv6_caller_is_outside_ipv4_networks if {
	actions(user("alice", "2001:db8::1"), wednesday_22) == {"pull"}
}
