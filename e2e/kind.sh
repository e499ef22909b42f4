#!/usr/bin/env bash
# A beacon network on kind, for machines with Docker: creates a kind cluster, builds both
# images (Dockerfile at the repository root) and loads them into it, installs cert-manager
# from its release manifest and the chart, applies examples/testnet.yaml (an Issuer, a
# 4-member BeaconNetwork and its Initial BeaconCeremony) and waits until beacons flow.
#
#   e2e/kind.sh            # create (or reuse) the cluster "beacon" and bring everything up
#   e2e/kind.sh --delete   # delete the cluster
#
# Needs docker, kind, kubectl and helm on PATH. Environment:
#   KIND_CLUSTER (default beacon), CERT_MANAGER_VERSION (default below),
#   BEACON_NAMESPACE (the operator's namespace, default beacon-system),
#   BEACON_TIMEOUT (seconds to wait for the first beacon, default 900).
# Not run by CI: the project's machines have no Docker engine (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER:-beacon}
cert_manager_version=${CERT_MANAGER_VERSION:-v1.19.1}
operator_namespace=${BEACON_NAMESPACE:-beacon-system}
timeout=${BEACON_TIMEOUT:-900}
example=examples/testnet.yaml

say() { printf '== %s\n' "$*"; }
die() { printf 'e2e/kind.sh: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found on PATH; install it and run this again"
done
docker info >/dev/null 2>&1 || die "docker cannot reach a Docker engine (is the daemon running?)"

if [ "${1:-}" = "--delete" ]; then
  kind delete cluster --name "$cluster"
  exit 0
fi
[ -f "$example" ] || die "$example not found (run from a checkout of the repository)"

# The images' tag is the workspace version, which the chart's appVersion follows.
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[ -n "$version" ] || die "cannot read [workspace.package] version from Cargo.toml"
node_image="ghcr.io/beacon-operator/beacon-node:$version"
operator_image="ghcr.io/beacon-operator/beacon-operator:$version"

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  say "reusing kind cluster $cluster"
else
  say "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null

say "building $node_image and $operator_image"
docker build --target node -t "$node_image" .
docker build --target operator -t "$operator_image" .
say "loading the images into $cluster"
kind load docker-image --name "$cluster" "$node_image" "$operator_image"

say "installing cert-manager $cert_manager_version"
kubectl apply --server-side -f \
  "https://github.com/cert-manager/cert-manager/releases/download/$cert_manager_version/cert-manager.yaml"
kubectl -n cert-manager wait deployment --all --for=condition=Available --timeout=300s

say "installing the chart into $operator_namespace"
# The images were loaded into the nodes; IfNotPresent keeps the kubelet from pulling them.
helm upgrade --install beacon-operator charts/beacon-operator \
  --namespace "$operator_namespace" --create-namespace \
  --set image.pullPolicy=IfNotPresent \
  --wait --timeout 300s

say "applying $example"
# cert-manager's webhook admits Issuers; right after its Deployment is Available it may not
# answer yet, so the first applies can fail.
applied=""
for _ in $(seq 1 20); do
  if kubectl apply --server-side -f "$example"; then
    applied=yes
    break
  fi
  sleep 6
done
[ -n "$applied" ] || die "kubectl apply -f $example kept failing (output above)"

# The BeaconNetworks of the example, as namespace/name.
mapfile -t networks < <(kubectl get -f "$example" \
  -o jsonpath='{range .items[?(@.kind=="BeaconNetwork")]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}')
[ ${#networks[@]} -gt 0 ] || die "$example has no BeaconNetwork"

for network in "${networks[@]}"; do
  ns=${network%%/*}
  name=${network#*/}
  say "waiting up to $timeout s for the first beacon of $network"
  deadline=$((SECONDS + timeout))
  round=""
  while [ $SECONDS -lt $deadline ]; do
    round=$(kubectl -n "$ns" get beaconnetwork "$name" -o jsonpath='{.status.latestRound}' 2>/dev/null || true)
    if [ -n "$round" ] && [ "$round" -gt 0 ] 2>/dev/null; then
      break
    fi
    sleep 5
  done
  if [ -z "$round" ] || ! [ "$round" -gt 0 ] 2>/dev/null; then
    kubectl -n "$ns" get beaconnetwork,beaconceremony,pods -o wide || true
    kubectl -n "$operator_namespace" logs deployment/beacon-operator --tail=50 || true
    die "no beacon from $network within $timeout s (status and operator log above)"
  fi
  say "$network is at round $round"
done

kubectl get beaconnetworks -A
first=${networks[0]}
ns=${first%%/*}
name=${first#*/}
member=$(kubectl -n "$ns" get beaconnetwork "$name" -o jsonpath='{.spec.members[0].name}')
cat <<WATCH

Beacons are flowing. Watch them:
  kubectl get beaconnetworks -A --watch
  kubectl -n $ns port-forward svc/$name-$member 8080:8080 &
  curl -s http://127.0.0.1:8080/public/latest
  curl -s http://127.0.0.1:8080/info
Delete everything: e2e/kind.sh --delete
WATCH
