#!/usr/bin/env bash
# Builds the real node's binaries (NODE=kubelet, see hack/localcluster/kubelet.py) from Go
# modules: kubelet, kube-proxy and kube-scheduler from the same k8s.io/kubernetes module that
# build-bins.sh uses (hack/go.mod), containerd v2 and its runc shim, and runc with seccomp.
# Debian's containerd 1.6 and runc 1.1 are too old: the 1.6 shim fails with "type with url
# ...: not found" and runc 1.1 with "can't get final child's PID from pipe".
# They land in a cache outside git, keyed by version, and are rebuilt only when missing.
# Prints the bin directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${RUNC_VERSION:-v1.5.3}
CACHE=${TASKFORGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskforge}
BIN="$CACHE/bin/node-k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION"
mkdir -p "$BIN"

log() { printf '[build-node-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
start=$(date +%s)

missing=()
for b in kubelet kube-proxy kube-scheduler; do
  [ -x "$BIN/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "building ${missing[*]} (Kubernetes $K8S_VERSION)"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  major=$(echo "$K8S_VERSION" | cut -d. -f1 | tr -d v)
  build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  kv=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kv+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    kv+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date -X $pkg.gitCommit=module-$K8S_VERSION"
  done
  for b in "${missing[@]}"; do
    t0=$(date +%s)
    (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $kv" \
      -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$BIN/$b.tmp" "$BIN/$b"
    log "built $b in $(( $(date +%s) - t0 ))s"
  done
fi

# containerd's module has no replace directives, so `go install module@version` builds it
# as released. The shim must be the v2 one (first on containerd's PATH, see kubelet.py).
gobin=$(mktemp -d)
trap 'rm -rf "$gobin"' EXIT
for b in containerd containerd-shim-runc-v2 ctr; do
  [ -x "$BIN/$b" ] && continue
  t0=$(date +%s)
  (cd "$gobin" && GOFLAGS= GOBIN="$gobin" CGO_ENABLED=0 go install -trimpath \
    -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/$b@$CONTAINERD_VERSION")
  mv "$gobin/$b" "$BIN/$b"
  log "built $b $CONTAINERD_VERSION in $(( $(date +%s) - t0 ))s"
done

# runc needs cgo and libseccomp (Debian's libseccomp-dev, installed by setup.sh) for the
# RuntimeDefault seccomp profile that step pods ask for.
if [ ! -x "$BIN/runc" ]; then
  t0=$(date +%s)
  (cd "$gobin" && GOFLAGS= GOBIN="$gobin" CGO_ENABLED=1 go install -trimpath -tags seccomp \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" \
    "github.com/opencontainers/runc@$RUNC_VERSION")
  mv "$gobin/runc" "$BIN/runc"
  log "built runc $RUNC_VERSION in $(( $(date +%s) - t0 ))s"
fi

log "node binaries ready in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"
