package registry.authz_test

import data.registry.authz

github(repository, ref) := {
	"subject": concat("", ["repo:", repository, ":ref:", ref]), "name": "", "groups": [], "connector": "oidc", "anonymous": false,
	"claims": {"iss": "https://token.actions.githubusercontent.com", "repository": repository, "ref": ref},
}

gitlab(path, protected) := {
	"subject": concat("", ["project_path:", path]), "name": "", "groups": [], "connector": "oidc", "anonymous": false,
	"claims": {"iss": "https://gitlab.example.com", "project_path": path, "ref_protected": protected},
}

k8s(ns) := {
	"subject": concat("", ["system:serviceaccount:", ns, ":builder"]), "name": "", "groups": [], "connector": "k8s", "anonymous": false,
	"claims": {"iss": "https://kubernetes.default.svc", "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": "builder"}}},
}

req(id, scopes) := {"service": "registry.test", "identity": id, "scopes": scopes, "client": {"ip": "127.0.0.1", "user_agent": "test"}}

repo(name, actions) := {"type": "repository", "name": name, "actions": actions}

decide(inp) := {sprintf("%s:%s", [g.name, g.action]) | some g in authz.allowed with input as inp}

test_github_main_pushes_its_own_image if {
	decide(req(github("acme/api", "refs/heads/main"), [repo("ci/acme/api", ["pull", "push"]), repo("ci/acme/api/cache", ["*"])])) == {
		"ci/acme/api:pull", "ci/acme/api:push", "ci/acme/api/cache:pull", "ci/acme/api/cache:push",
	}
}

test_github_cannot_push_another_repository_or_a_prefix_lookalike if {
	decide(req(github("acme/api", "refs/heads/main"), [repo("ci/acme/web", ["push"]), repo("ci/acme/api-evil", ["push"]), repo("acme/api", ["push"])])) == set()
}

test_github_branch_pulls_only if {
	decide(req(github("acme/api", "refs/heads/feature"), [repo("ci/acme/api", ["pull", "push"])])) == {"ci/acme/api:pull"}
}

test_gitlab_protected_ref_pushes if {
	decide(req(gitlab("group/project", "true"), [repo("ci/group/project", ["push"])])) == {"ci/group/project:push"}
	decide(req(gitlab("group/project", "false"), [repo("ci/group/project", ["push", "pull"])])) == {"ci/group/project:pull"}
}

test_kubernetes_pulls_in_its_namespace_only if {
	decide(req(k8s("payments"), [repo("ns/payments/app", ["pull", "push"]), repo("ns/billing/app", ["pull"])])) == {"ns/payments/app:pull"}
}

test_unknown_issuer_gets_nothing if {
	id := json.patch(github("acme/api", "refs/heads/main"), [{"op": "replace", "path": "/claims/iss", "value": "https://evil.example"}])
	decide(req(id, [repo("ci/acme/api", ["pull"])])) == set()
}

test_github_paths_are_lower_cased if {
	decide(req(github("Acme/API", "refs/heads/main"), [repo("ci/acme/api", ["push"]), repo("ci/Acme/API", ["push"])])) == {"ci/acme/api:push"}
}

test_claims_count_only_from_the_issuers_connector if {
	# a GitHub token verified by another connector, and a Kubernetes token
	# verified by the connector meant for GitHub and GitLab: nothing.
	id := json.patch(github("acme/api", "refs/heads/main"), [{"op": "replace", "path": "/connector", "value": "k8s"}])
	decide(req(id, [repo("ci/acme/api", ["pull"])])) == set()
	sa := json.patch(k8s("payments"), [{"op": "replace", "path": "/connector", "value": "oidc"}])
	decide(req(sa, [repo("ns/payments/app", ["pull"])])) == set()
}

test_people_get_nothing_here if {
	id := {"subject": "alice", "name": "alice", "groups": [], "connector": "local", "anonymous": false, "claims": {"iss": "https://token.actions.githubusercontent.com", "repository": "acme/api", "ref": "refs/heads/main"}}
	decide(req(id, [repo("ci/acme/api", ["pull"])])) == set()
}

test_reasons if {
	authz.reasons == {"github job repo:acme/api:ref:refs/heads/main may push its own image"} with input as req(github("acme/api", "refs/heads/main"), [])
	authz.reasons == {"gitlab job project_path:g/p pulls only (its ref may not publish)"} with input as req(gitlab("g/p", "false"), [])
}
