#!/usr/bin/env bash
# image.sh — build the ewgw container image (make image), offline.
#
# It compiles bin/ewgw with CGO_ENABLED=0 (make build), copies it into an
# empty build context, and runs `docker build` with the repository's
# Dockerfile. The image is FROM scratch, so no base image is pulled.
#
# Usage: scripts/image.sh [--check]
#   --check  after building, run the image as docker would in a hardened pod
#            (--read-only, --user 65532, no capabilities) with a minimal
#            config mounted at /etc/ewgw, and require GET /healthz to answer
#            "ok" on the published admin port.
# Environment:
#   IMAGE     tag to build (default ewgw:dev)
#   EWGW_BIN  use this prebuilt static binary instead of running make build
#   GO        the go command make uses (default go)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${IMAGE:-ewgw:dev}
check=false
case ${1:-} in
'') ;;
--check) check=true ;;
*) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

die() { echo "image.sh: $*" >&2; exit 1; }

if ! command -v docker >/dev/null 2>&1; then
	die "docker not found: install docker.io and start dockerd to build the image"
fi
if ! docker info >/dev/null 2>&1; then
	die "docker daemon not reachable (docker info failed): install docker.io and start dockerd to build the image"
fi

bin=${EWGW_BIN:-}
if [ -z "$bin" ]; then
	CGO_ENABLED=0 make --no-print-directory -C "$root" build
	bin=$root/bin/ewgw
fi
[ -x "$bin" ] || die "$bin: no executable binary"
# FROM scratch has no libc: the binary must not be linked against one.
if ! go version -m "$bin" | grep -q 'CGO_ENABLED=0'; then
	die "$bin was not built with CGO_ENABLED=0; it cannot run FROM scratch"
fi

ctx=$(mktemp -d)
tmp=
cid=
cleanup() {
	if [ -n "$cid" ]; then docker rm -f "$cid" >/dev/null 2>&1 || true; fi
	rm -rf "$ctx" ${tmp:+"$tmp"}
}
trap cleanup EXIT
mkdir "$ctx/bin"
install -m 0555 "$bin" "$ctx/bin/ewgw"
docker build --pull=false -f "$root/Dockerfile" -t "$image" "$ctx"
echo "image.sh: built $image"
$check || exit 0

# Smoke test: a static services file, admin on all interfaces, port 15000
# published on a free loopback port.
tmp=$(mktemp -d)
chmod 0755 "$tmp" # the container's user 65532 reads the mount
cat >"$tmp/ewgw.yaml" <<'YAML'
cluster: image-check
listen: ":15443"
admin:
  listen: "0.0.0.0:15000"
log:
  format: text
discovery:
  file: services.yaml
YAML
echo 'services: []' >"$tmp/services.yaml"
chmod 0644 "$tmp/ewgw.yaml" "$tmp/services.yaml"
# No --rm: the logs must survive a crash; cleanup removes the container.
cid=$(docker run -d --read-only --user 65532 --cap-drop ALL \
	--security-opt no-new-privileges -p 127.0.0.1::15000 \
	-v "$tmp:/etc/ewgw:ro" "$image" run --config /etc/ewgw/ewgw.yaml)
addr=$(docker port "$cid" 15000/tcp | head -n1)
echo "image.sh: container ${cid:0:12} admin at $addr"
# The gateway is another process: poll until it answers, with a deadline.
body=
for _ in $(seq 100); do
	if body=$(curl -fsS --max-time 1 "http://$addr/healthz" 2>/dev/null); then
		break
	fi
	if [ "$(docker inspect -f '{{.State.Running}}' "$cid" 2>/dev/null)" != true ]; then
		break
	fi
	sleep 0.2
done
echo "GET /healthz: ${body:-<no answer>}"
if [ "$body" != ok ]; then
	docker logs "$cid" >&2 || true
	die "smoke test failed: /healthz did not answer ok"
fi
ready=$(curl -sS --max-time 2 -w ' %{http_code}' "http://$addr/readyz" | tr -d '\n')
echo "GET /readyz: $ready"
echo "ewgw version: $(docker run --rm --read-only --user 65532 "$image" version)"
echo "user: $(docker inspect -f '{{.Config.User}}' "$image")  size: $(docker image inspect -f '{{.Size}}' "$image") bytes"
echo "image.sh: check passed: $image runs read-only as 65532 and /healthz answers ok"
