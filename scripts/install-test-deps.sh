#!/usr/bin/env bash
# Installs what the tests need, only when it is missing. Idempotent and
# non-interactive, so `make test` works on a fresh machine and in CI.
#
#   Debian packages: docker-registry (distribution 2.8), skopeo, podman, slapd, ldap-utils
#   go install:      crane, oras, distribution 3.x (its binary is `registry`)
set -euo pipefail

GOBIN="$(go env GOPATH)/bin"
export PATH="$GOBIN:$PATH"

CRANE_VERSION=v0.22.1
ORAS_VERSION=v1.3.6
DISTRIBUTION_VERSION=v3.0.0

need_apt=()
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v podman >/dev/null || need_apt+=(podman)
[ -x /usr/sbin/slapd ] || need_apt+=(slapd)
command -v ldapadd >/dev/null || need_apt+=(ldap-utils)

if [ ${#need_apt[@]} -gt 0 ]; then
	echo "installing Debian packages: ${need_apt[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
	# The packages' own services are never used: tests start their own
	# processes on loopback ports in temporary directories.
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

go_install() { # binary module@version
	if ! command -v "$1" >/dev/null; then
		echo "go install $2"
		go install "$2"
	fi
}
go_install crane "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
go_install oras "oras.land/oras/cmd/oras@$ORAS_VERSION"
go_install registry "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION"

echo "test components present: docker-registry skopeo podman slapd ldapadd crane oras registry"
