# CI identities from OIDC tokens: each CI job may push only to its own
# image, and pull it back. The job is known by the claims of its OIDC token
# (input.identity.claims, every claim of the verified token), mapped per
# issuer in data.registry.ci.issuers:
#
#   {ISSUER: {"kind": "github" | "gitlab" | "kubernetes", "prefix": "ci/",
#             "connector": "oidc"}}
#
# "connector" is the name of the tollgate connector (type: oidc) that
# verifies this issuer's tokens: claims that came any other way (an LDAP
# attribute that happens to be called "iss") never count.
#
# - GitHub Actions: the `repository` claim ("org/repo") owns PREFIX + org/repo
#   (and below); pushes only from the default branch (`ref` =
#   refs/heads/main), pulls from any ref.
# - GitLab CI: the `project_path` claim owns PREFIX + group/project; pushes
#   only from protected refs (`ref_protected` = "true").
# - Kubernetes service accounts: pull (never push) under PREFIX + NAMESPACE/.
#
# Repository and project paths are lower-cased: image names are lower case,
# GitHub and GitLab paths need not be.
#
# Anything else (people, other issuers, other claims) gets nothing here:
# layer this file over another policy for people.
package registry.authz

issuer := i if {
	i := data.registry.ci.issuers[input.identity.claims.iss]
	i.connector == input.identity.connector
}

# owned(name): the job owns the repository name, by its image path.
owned(name) if {
	some path in job_paths
	name == concat("", [issuer.prefix, path])
}

owned(name) if {
	some path in job_paths
	startswith(name, concat("", [issuer.prefix, path, "/"]))
}

job_paths contains lower(input.identity.claims.repository) if issuer.kind == "github"

job_paths contains lower(input.identity.claims.project_path) if issuer.kind == "gitlab"

# may_push: the job runs from a ref that may publish images.
may_push if {
	issuer.kind == "github"
	input.identity.claims.ref == "refs/heads/main"
}

may_push if {
	issuer.kind == "gitlab"
	input.identity.claims.ref_protected == "true"
}

# actions_for(name): what the job may do on a repository.
actions_for(name) := {"pull", "push"} if {
	owned(name)
	may_push
}

actions_for(name) := {"pull"} if {
	owned(name)
	not may_push
}

actions_for(name) := {"pull"} if {
	issuer.kind == "kubernetes"
	ns := input.identity.claims["kubernetes.io"].namespace
	startswith(name, concat("", [issuer.prefix, ns, "/"]))
}

wants(s, a) if a in s.actions

wants(s, _) if "*" in s.actions

allowed contains {"type": "repository", "name": s.name, "action": a} if {
	some s in input.scopes
	s.type == "repository"
	some a in actions_for(s.name)
	wants(s, a)
}

reasons contains sprintf("%s job %s may push its own image", [issuer.kind, input.identity.subject]) if may_push

reasons contains sprintf("%s job %s pulls only (its ref may not publish)", [issuer.kind, input.identity.subject]) if {
	issuer.kind != "kubernetes"
	not may_push
}
