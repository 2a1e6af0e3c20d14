#!/usr/bin/env bash
# Builds kube-apiserver for test/deploy (kubectl apply --dry-run=server of the
# Helm chart) and installs it in GOBIN, only when it is missing or another
# version. `go install k8s.io/kubernetes/cmd/kube-apiserver@...` fails (its
# go.mod replaces the staging modules with ./staging/... paths), so it is
# built through the wrapper module in scripts/kube-apiserver, copied to a
# cache directory outside the repository. Cold: about 3 minutes and 2-3 GB of
# RAM on 2 cores; the Go build cache makes a rebuild a relink.
#
#   scripts/build-kube-apiserver.sh        build and install when missing
#   scripts/build-kube-apiserver.sh -gen   regenerate scripts/kube-apiserver/go.mod
#                                          and go.sum for KUBE_VERSION
set -euo pipefail

KUBE_VERSION=v1.34.2
STAGING_VERSION=v0.${KUBE_VERSION#v1.} # k8s.io/api etc. are tagged v0.MINOR.PATCH
WRAPPER="$(cd "$(dirname "$0")" && pwd)/kube-apiserver"
GOBIN="$(go env GOPATH | cut -d: -f1)/bin"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/kube-apiserver-$KUBE_VERSION"

# gen writes the wrapper's go.mod from k8s.io/kubernetes's own: its go and
# godebug lines, and each staging module replaced by its published version.
gen() {
	local gomod tmp
	gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	tmp=$(mktemp -d)
	{
		sed -n '1,/^module /p' "$WRAPPER/go.mod" | sed '$d' # the header comment
		echo "module tollgate.test/kube-apiserver"
		echo
		grep -E '^(go|godebug) ' "$gomod"
		echo
		echo "tool k8s.io/kubernetes/cmd/kube-apiserver"
		echo
		echo "require k8s.io/kubernetes $KUBE_VERSION"
		echo
		echo "replace ("
		grep '=> ./staging/src/k8s.io/' "$gomod" | awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
		echo ")"
	} >"$tmp/go.mod"
	(cd "$tmp" && go mod tidy </dev/null)
	cp "$tmp/go.mod" "$tmp/go.sum" "$WRAPPER/"
	rm -rf "$tmp"
}

if [ "${1:-}" = "-gen" ]; then
	gen
	exit 0
fi

if "$GOBIN/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $KUBE_VERSION"; then
	exit 0
fi
echo "building kube-apiserver $KUBE_VERSION in $CACHE (about 3 minutes, once per machine)"
mkdir -p "$CACHE"
cp "$WRAPPER/go.mod" "$WRAPPER/go.sum" "$CACHE/"
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
# Without the version stamp the server reports v0.0.0-master.
(cd "$CACHE" && go build -o "$CACHE/kube-apiserver" -ldflags "-s -w \
	-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$minor" \
	k8s.io/kubernetes/cmd/kube-apiserver </dev/null)
install -m 0755 "$CACHE/kube-apiserver" "$GOBIN/kube-apiserver"
