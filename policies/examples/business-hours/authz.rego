# Read-only outside business hours or outside the office networks.
#
# Every authenticated user may pull; data.registry.writers[PROJECT] may also
# push to PROJECT/...  Pushes are allowed only during business hours
# (data.registry.hours: days, from, to, timezone) OR from a trusted network
# (data.registry.networks, CIDRs), so an emergency fix can still ship from
# the office at night.
#
# The decision cache: this policy reads input.client and calls time.now_ns,
# so tollgate never caches its decisions (`tollgate policy check` says so):
# a decision taken at 17:59 must not be served at 18:01, nor one taken for
# the office network to a caller from elsewhere. Nothing to configure.
package registry.authz

subject := input.identity.subject if {
	input.identity.anonymous == false
	input.identity.subject != ""
}

project_of(name) := split(name, "/")[0]

# business_hours: now is on a working day between from and to (hours, in
# the configured time zone).
business_hours if {
	h := data.registry.hours
	now := [time.now_ns(), h.timezone]
	time.weekday(now) in h.days
	[hour, _, _] := time.clock(now)
	hour >= h.from
	hour < h.to
}

trusted_network if {
	some cidr in data.registry.networks
	net.cidr_contains(cidr, input.client.ip)
}

may_write if business_hours

may_write if trusted_network

actions_for(name) := {"pull", "push"} if {
	subject in data.registry.writers[project_of(name)]
	may_write
}

actions_for(name) := {"pull"} if {
	subject
	not subject in data.registry.writers[project_of(name)]
}

actions_for(name) := {"pull"} if {
	subject in data.registry.writers[project_of(name)]
	not may_write
}

wants(s, a) if a in s.actions

wants(s, _) if "*" in s.actions

allowed contains {"type": "repository", "name": s.name, "action": a} if {
	some s in input.scopes
	s.type == "repository"
	some a in actions_for(s.name)
	wants(s, a)
}

reasons contains "outside business hours and outside the trusted networks: read-only" if {
	subject
	not may_write
}
