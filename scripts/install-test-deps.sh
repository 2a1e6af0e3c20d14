#!/usr/bin/env bash
# Installs what the tests need, only what is missing. Idempotent and
# non-interactive (no prompts, no stdin), so `make test` works on a fresh
# Debian machine and in CI. Run as root: it calls apt-get, without sudo.
#
#   Debian packages: docker-registry (distribution 2.8), skopeo, podman,
#                    slapd, ldap-utils
#                    systemd (systemd-analyze, systemd-sysusers: the unit's tests), curl,
#                    redis-server (the replicas' shared state; the tests start
#                    their own, never the system service), nginx (a reverse
#                    proxy in front of the broker, started by the tests),
#                    docker.io (dockerd, its containerd with ctr, runc and
#                    Debian's docker client; the tests start their own dockerd
#                    in a temporary directory, never the system service)
#                    runc (podman runs the image test's container with it:
#                    crun refuses hybrid cgroups)
#                    etcd-server (for kube-apiserver; its service is never started)
#   go install:      crane, oras, opa, helm, distribution 3.x (its binary is `registry`;
#                    Debian's 2.8 binary is `docker-registry`)
#   go build:        kube-apiserver, from k8s.io/kubernetes through a wrapper module
#                    (scripts/build-kube-apiserver.sh: about 3 minutes, once per machine)
#   preinstalled:    kubectl 1.25 or newer (strict server-side field validation);
#                    not Debian's kubernetes-client, whose kubectl conflicts with it
#   npm ci:          oidc-provider in test/oidcprovider (needs Node.js 20+, npm)
set -euo pipefail

CRANE_VERSION=v0.22.1
ORAS_VERSION=v1.3.6
DISTRIBUTION_VERSION=v3.0.0
HELM_VERSION=v3.19.0
# opa: the same version as the OPA library in go.mod, for the interop tests.
OPA_VERSION=$(cd "$(dirname "$0")/.." && go list -m -f '{{.Version}}' github.com/open-policy-agent/opa)

command -v go >/dev/null || { echo "install-test-deps: go is not on PATH" >&2; exit 1; }
GOBIN="$(go env GOPATH | cut -d: -f1)/bin"
export PATH="$GOBIN:$PATH"

# Debian packages: program to look for, then the package that provides it.
need_apt=()
want_pkg() { # program package
	command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || need_apt+=("$2")
}
want_pkg docker-registry docker-registry
want_pkg skopeo skopeo
want_pkg podman podman
want_pkg slapd slapd
want_pkg ldapadd ldap-utils
want_pkg systemd-analyze systemd
want_pkg systemd-sysusers systemd
want_pkg curl curl
want_pkg redis-server redis-server
want_pkg nginx nginx
want_pkg promtool prometheus
want_pkg dockerd docker.io
want_pkg runc runc
want_pkg etcd etcd-server

if [ ${#need_apt[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-test-deps: missing Debian packages ${need_apt[*]}; run this script as root" >&2
		exit 1
	fi
	echo "installing Debian packages: ${need_apt[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq -o DPkg::Lock::Timeout=600 </dev/null
	# The packages' own services are never used: the tests start their own
	# processes on loopback ports in temporary directories.
	# Wait for another apt-get (a second `make test`, unattended upgrades)
	# instead of failing on its lock.
	apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need_apt[@]}" </dev/null
	# prometheus is wanted for promtool only: its server (and the node
	# exporter it recommends) must not stay running on a test machine.
	if [[ " ${need_apt[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
		systemctl disable --now prometheus.service prometheus-node-exporter.service 2>/dev/null || true
	fi
	# docker.io is wanted for the tests' own dockerd: the system daemon (and
	# its containerd) would listen on /run/docker.sock as root.
	# Its postinst enables the units even where systemd is not running
	# (systemctl disable works offline, and also disables the init script).
	if [[ " ${need_apt[*]} " == *" docker.io "* ]]; then
		if [ -d /run/systemd/system ]; then
			systemctl stop docker.socket docker.service containerd.service 2>/dev/null || true
		elif [ -x /etc/init.d/docker ]; then
			/etc/init.d/docker stop </dev/null >/dev/null 2>&1 || true
		fi
		if command -v systemctl >/dev/null; then
			systemctl disable docker.socket docker.service containerd.service >/dev/null 2>&1 || true
		else
			update-rc.d docker disable >/dev/null 2>&1 || true
		fi
	fi
	if [[ " ${need_apt[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
		systemctl disable --now etcd.service 2>/dev/null || true
	fi
fi

go_install() { # program module@version
	if command -v "$1" >/dev/null; then
		return
	fi
	echo "go install $2"
	GOBIN="$GOBIN" go install "$2" </dev/null
}
go_install crane "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
go_install oras "oras.land/oras/cmd/oras@$ORAS_VERSION"
go_install registry "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION"
go_install opa "github.com/open-policy-agent/opa@$OPA_VERSION"
go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
"$(dirname "$0")/build-kube-apiserver.sh" </dev/null

# Another program named `registry` earlier on PATH would shadow distribution 3.
if ! registry --version 2>/dev/null | grep -q 'distribution/distribution/v3'; then
	echo "install-test-deps: $(command -v registry) is not distribution 3 ($(registry --version 2>&1 | head -1))" >&2
	exit 1
fi

# The test OIDC provider (test/oidcprovider): the npm package oidc-provider
# under Node 20 or later, installed from its lockfile. npm ci runs again only
# when the installed tree was made from another lockfile.
OIDC_DIR="$(cd "$(dirname "$0")/.." && pwd)/test/oidcprovider"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "install-test-deps: node and npm are needed for test/oidcprovider (Node.js 20 or later)" >&2
	exit 1
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
	echo "install-test-deps: Node.js $(node --version) is too old for test/oidcprovider; 20 or later is needed" >&2
	exit 1
fi
if [ ! -f "$OIDC_DIR/node_modules/oidc-provider/package.json" ] ||
	! cmp -s "$OIDC_DIR/package-lock.json" "$OIDC_DIR/node_modules/.tollgate-lock"; then
	echo "npm ci in test/oidcprovider"
	(cd "$OIDC_DIR" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
	cp "$OIDC_DIR/package-lock.json" "$OIDC_DIR/node_modules/.tollgate-lock"
fi

missing=()
for p in docker-registry registry crane oras opa helm skopeo podman slapd ldapadd systemd-analyze systemd-sysusers curl redis-server dockerd containerd ctr runc etcd kube-apiserver kubectl; do
	command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] || missing+=("$p")
done
[ -f "$OIDC_DIR/node_modules/oidc-provider/package.json" ] || missing+=("test/oidcprovider/node_modules/oidc-provider")
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-test-deps: still missing after installing: ${missing[*]}" >&2
	exit 1
fi

echo "test components:"
echo "  $(docker-registry --version 2>&1 | head -1)"
echo "  $(registry --version 2>&1 | head -1)"
echo "  crane $(crane version 2>&1), oras $(oras version 2>&1 | head -1 | awk '{print $2}'), $(opa version 2>&1 | head -1)"
echo "  $(skopeo --version 2>&1), $(podman --version 2>&1)"
echo "  slapd $([ -x /usr/sbin/slapd ] && echo present), $(command -v ldapadd)"
echo "  helm $(helm version --short 2>&1), $(systemd-analyze --version 2>&1 | head -1), $(redis-server --version 2>&1 | cut -d' ' -f1-3)"
echo "  $(dockerd --version 2>&1), $(ctr --version 2>&1), $(runc --version 2>&1 | head -1)"
echo "  $(etcd --version 2>&1 | head -1), kube-apiserver $(kube-apiserver --version 2>&1), kubectl $(kubectl version --client 2>&1 | head -1)"
echo "  node $(node --version), oidc-provider $(cd "$OIDC_DIR" && node -p "require('./node_modules/oidc-provider/package.json').version")"
