#!/usr/bin/env bash
# Build the Containerfile with podman and smoke-test the image: `version`,
# then `serve` on a read-only root file system answering /healthz and /readyz
# as user 65532.
#
#   packaging/container-smoke.sh            (as root, on Debian with podman)
#
# Without registry access (GO_IMAGE and RUN_IMAGE cannot be pulled), it builds
# stand-ins for both bases from Debian 12 packages with debootstrap: a build
# base with gcc, libc6-dev and this machine's Go toolchain, and a
# distroless-like run base (glibc, CA certificates, a nonroot user 65532).
# Where crun cannot start containers (cgroup v1/v2 hybrid hosts, or no
# CAP_SYS_RESOURCE to raise rlimits), it uses runc with lowered rlimits.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
IMAGE=${IMAGE:-localhost/pgcloak:$VERSION}
GO_IMAGE=${GO_IMAGE:-docker.io/library/golang:1.26-bookworm}
RUN_IMAGE=${RUN_IMAGE:-gcr.io/distroless/base-debian12:nonroot}
work=${WORK:-/var/tmp/pgcloak-container}

need() { command -v "$1" >/dev/null || { echo "container-smoke: $1 not found (apt-get install -y $2)" >&2; exit 1; }; }
need podman podman

# Runtime flags: plain podman first; runc with lowered rlimits where crun fails.
flags=()
probe_image=
pick_runtime() {
	local img=$1 err
	if err=$(podman run --rm "$img" /usr/bin/true 2>&1) || ! grep -qE 'setrlimit|rlimit|cgroups in hybrid mode' <<<"$err"; then
		return
	fi
	need runc runc
	flags=(--runtime runc)
	runflags=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
	echo "container-smoke: crun cannot start containers here ($err); using runc with nofile=1024, nproc=1024"
}
runflags=()

if ! podman image exists "$GO_IMAGE" && ! podman pull -q "$GO_IMAGE" >/dev/null 2>&1; then
	echo "container-smoke: cannot pull $GO_IMAGE; building local base images with debootstrap"
	need debootstrap debootstrap
	mkdir -p "$work"
	root=$work/rootfs
	if [ ! -x "$root/usr/bin/gcc" ]; then
		rm -rf "$root"
		debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log"
	fi
	goroot=$(go env GOROOT)
	GO_IMAGE=localhost/pgcloak-build-base:bookworm
	tar -C "$root" --exclude=./proc --exclude=./sys --exclude=./dev -c . |
		podman import --change 'ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change 'ENV GOTOOLCHAIN=local' - "$GO_IMAGE" >/dev/null
	ctr=$(buildah from "$GO_IMAGE")
	buildah copy "$ctr" "$goroot" /usr/local/go >/dev/null
	# This machine's CA bundle: where outbound TLS is inspected by a local
	# CA, go mod download in the build needs it as the host does.
	buildah copy "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
	buildah commit -q "$ctr" "$GO_IMAGE" >/dev/null
	buildah rm "$ctr" >/dev/null

	# distroless base-debian12 in miniature (amd64): glibc (2.34+ has NSS
	# files and dns built in), CA certificates, passwd/group with nonroot
	# 65532, /tmp; Debian's merged-/usr layout.
	run=$work/runroot
	rm -rf "$run"
	mkdir -p "$run"/{etc/ssl/certs,tmp,usr/lib/x86_64-linux-gnu,usr/lib64}
	chmod 1777 "$run/tmp"
	cp -L "$root"/usr/lib/x86_64-linux-gnu/{libc.so.6,ld-linux-x86-64.so.2} "$run/usr/lib/x86_64-linux-gnu/"
	ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$run/usr/lib64/ld-linux-x86-64.so.2"
	ln -s usr/lib "$run/lib"
	ln -s usr/lib64 "$run/lib64"
	cp -L "$root/etc/ssl/certs/ca-certificates.crt" "$run/etc/ssl/certs/"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$run/etc/passwd"
	printf 'root:x:0:\nnonroot:x:65532:\n' >"$run/etc/group"
	RUN_IMAGE=localhost/pgcloak-run-base:bookworm
	tar -C "$run" -c . | podman import - "$RUN_IMAGE" >/dev/null
fi
pick_runtime "$GO_IMAGE"

echo "container-smoke: podman build $IMAGE (GO_IMAGE=$GO_IMAGE RUN_IMAGE=$RUN_IMAGE)"
podman "${flags[@]}" build "${runflags[@]}" --network host -q -t "$IMAGE" \
	--build-arg VERSION="$VERSION" --build-arg GO_IMAGE="$GO_IMAGE" --build-arg RUN_IMAGE="$RUN_IMAGE" \
	-f Containerfile . >/dev/null

out=$(podman "${flags[@]}" run --rm "${runflags[@]}" "$IMAGE" version)
echo "container-smoke: podman run $IMAGE version: $out"
[ "$out" = "pgcloak $VERSION" ] || { echo "container-smoke: want pgcloak $VERSION" >&2; exit 1; }
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
echo "container-smoke: image user: $user"
[ "$user" = 65532:65532 ] || { echo "container-smoke: image runs as $user, want 65532:65532" >&2; exit 1; }

# serve with a config mounted read-only, the root file system read-only.
cfgdir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 19187)
printf 'listen: 127.0.0.1:0\nupstream: "host=127.0.0.1 port=5432"\nmetrics_listen: 127.0.0.1:%s\n' "$port" >"$cfgdir/pgcloak.yaml"
chmod 0755 "$cfgdir"
chmod 0644 "$cfgdir/pgcloak.yaml"
cid=$(podman "${flags[@]}" run -d --read-only --network host --cap-drop ALL --security-opt no-new-privileges "${runflags[@]}" \
	-v "$cfgdir/pgcloak.yaml:/etc/pgcloak/pgcloak.yaml:ro" "$IMAGE")
trap 'podman rm -f "$cid" >/dev/null 2>&1 || true; rm -rf "$cfgdir"' EXIT
ok=
for _ in $(seq 100); do
	if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ok=1; break; fi
	sleep 0.1
done
if [ -z "$ok" ]; then
	podman logs "$cid" >&2
	echo "container-smoke: /readyz did not answer 200" >&2
	exit 1
fi
echo "container-smoke: serve in the container: /healthz $(curl -fsS "http://127.0.0.1:$port/healthz"), /readyz $(curl -fsS "http://127.0.0.1:$port/readyz")"
echo "container-smoke: process user: $(podman top "$cid" user huser | tail -1)"
echo "container-smoke: image size: $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"
echo "container-smoke: ok"
