#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go modules pinned in hack/go.mod:
# etcd, kube-apiserver, kube-controller-manager, kubectl, and helm (go install).
# They land in a cache outside git, keyed by version, and are rebuilt only when missing.
# Prints the bin directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")
ETCD_VERSION=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$here/go.mod")
HELM_VERSION=${HELM_VERSION:-v3.19.5}
CACHE=${TASKFORGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskforge}
BIN="$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
mkdir -p "$BIN"

log() { printf '[build-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
start=$(date +%s)

missing=()
for b in etcd kube-apiserver kube-controller-manager kubectl; do
  [ -x "$BIN/$b" ] || missing+=("$b")
done

if [ ${#missing[@]} -gt 0 ]; then
  log "building ${missing[*]} (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION); a cold build takes a while on 2 cores"
  cd "$here"
  export CGO_ENABLED=0 GOFLAGS=-mod=mod
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  major=$(echo "$K8S_VERSION" | cut -d. -f1 | tr -d v)
  build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  kv=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kv+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    kv+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date -X $pkg.gitCommit=module-$K8S_VERSION"
  done
  pkgs=()
  for b in "${missing[@]}"; do
    case $b in
      etcd) pkgs+=(./cmd/etcd) ;;
      *) pkgs+=("k8s.io/kubernetes/cmd/$b") ;;
    esac
  done
  for p in "${pkgs[@]}"; do
    name=$(basename "$p")
    t0=$(date +%s)
    go build -trimpath -ldflags "-s -w $kv" -o "$BIN/$name.tmp" "$p"
    mv "$BIN/$name.tmp" "$BIN/$name"
    log "built $name in $(( $(date +%s) - t0 ))s"
  done
fi

# Helm's built-in "current Kubernetes" defaults to an old release unless set at link time;
# charts with kubeVersion constraints need it to match the control plane.
helm_stamp="$BIN/.helm-kube-$K8S_VERSION"
if [ ! -x "$BIN/helm" ] || [ ! -f "$helm_stamp" ]; then
  log "installing helm $HELM_VERSION"
  kmajor=$(echo "$K8S_VERSION" | cut -d. -f1 | tr -d v)
  kminor=$(echo "$K8S_VERSION" | cut -d. -f2)
  helm_kube=""
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    helm_kube+=" -X $pkg.k8sVersionMajor=$kmajor -X $pkg.k8sVersionMinor=$kminor"
  done
  t0=$(date +%s)
  GOBIN="$BIN" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION $helm_kube" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch "$helm_stamp"
  log "built helm in $(( $(date +%s) - t0 ))s"
fi

# helm-docs, from its Go module: generates the chart's README (charts/taskforge/README.md) from
# the `# --` comments of values.yaml; tests/e2e/test_helm_values.py fails when it drifts.
HELM_DOCS_VERSION=${HELM_DOCS_VERSION:-v1.14.2}
if [ ! -x "$BIN/helm-docs-$HELM_DOCS_VERSION" ]; then
  log "installing helm-docs $HELM_DOCS_VERSION"
  t0=$(date +%s)
  gobin=$(mktemp -d)
  (cd "$gobin" && GOFLAGS= GOBIN="$gobin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
    "github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION")
  mv "$gobin/helm-docs" "$BIN/helm-docs-$HELM_DOCS_VERSION"
  rm -rf "$gobin"
  log "built helm-docs in $(( $(date +%s) - t0 ))s"
fi
ln -sf "helm-docs-$HELM_DOCS_VERSION" "$BIN/helm-docs"

# prometheus-operator's ServiceMonitor CRD, the real one from its Go module, so the chart's
# ServiceMonitor is dry-run against its true schema on the local control plane
# (tests/e2e/test_helm_cluster.py). v0.85.0 is the newest release the module proxy serves.
PROM_OP_VERSION=${PROM_OP_VERSION:-v0.85.0}
sm_crd="$BIN/crds/servicemonitors-$PROM_OP_VERSION.yaml"
if [ ! -f "$sm_crd" ]; then
  log "fetching prometheus-operator $PROM_OP_VERSION's ServiceMonitor CRD (Go module proxy)"
  dir=$(cd "$here" && GOFLAGS=-mod=mod go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROM_OP_VERSION" \
    | awk -F'"' '$2=="Dir"{print $4}')
  mkdir -p "$BIN/crds"
  cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
    "$sm_crd.tmp"
  chmod 644 "$sm_crd.tmp"
  mv "$sm_crd.tmp" "$sm_crd"
fi

log "binaries ready in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"
