#!/usr/bin/env bash
# Release binaries: dist/pgcloak-VERSION-linux-ARCH (amd64, arm64), each also
# as a .tar.gz with LICENSE, THIRD_PARTY_NOTICES.md and README.md, and
# dist/SHA256SUMS over all of them.
#
#   packaging/release.sh [ARCH...]      (make release; default: amd64 arm64)
#
# pgcloak links pg_query_go's C parser (cgo), so arm64 needs a cross C
# compiler: Debian's gcc-aarch64-linux-gnu, installed here when missing and
# running as root. Binaries link glibc dynamically (glibc >= the one printed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64 arm64)

# cross_cc ARCH prints the C compiler for ARCH, installing it if needed.
cross_cc() {
	local host triple
	host=$(go env GOHOSTARCH)
	case $1 in
	"$host") echo "${CC:-gcc}"; return ;;
	amd64) triple=x86_64-linux-gnu ;;
	arm64) triple=aarch64-linux-gnu ;;
	*) echo "release: unsupported architecture $1" >&2; return 1 ;;
	esac
	if ! command -v "$triple-gcc" >/dev/null; then
		if [ "$(id -u)" != 0 ]; then
			echo "release: $triple-gcc missing; run as root or: apt-get install gcc-${triple//_/-}" >&2
			return 1
		fi
		echo "release: installing gcc-$triple" >&2
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "gcc-${triple//_/-}" >&2
	fi
	echo "$triple-gcc"
}

mkdir -p dist
for arch in "${archs[@]}"; do
	cc=$(cross_cc "$arch")
	name=pgcloak-$VERSION-linux-$arch
	echo "release: building dist/$name with $cc"
	# -trimpath and -buildvcs=false: the same source gives the same binary
	# wherever it is checked out.
	CGO_ENABLED=1 GOOS=linux GOARCH=$arch CC=$cc \
		go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X github.com/pgcloak/pgcloak/cmd.Version=$VERSION" \
		-o "dist/$name" .
	stage=$(mktemp -d)
	mkdir "$stage/$name"
	cp "dist/$name" "$stage/$name/pgcloak"
	cp LICENSE THIRD_PARTY_NOTICES.md README.md "$stage/$name/"
	tar -C "$stage" --owner=0 --group=0 --sort=name --mtime=@0 -czf "dist/$name.tar.gz" "$name"
	rm -rf "$stage"
done
(cd dist && sha256sum pgcloak-"$VERSION"-linux-* > SHA256SUMS && cat SHA256SUMS)
