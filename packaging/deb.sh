#!/usr/bin/env bash
# Debian package: dist/pgcloak_DEBVERSION_ARCH.deb, built with dpkg-deb from
# the release binary (packaging/release.sh builds it when missing).
#
#   packaging/deb.sh [ARCH]      (make deb; default: this machine's architecture)
#   OUT=dir packaging/deb.sh     (write the .deb elsewhere; the test does)
#
# Layout: /usr/bin/pgcloak, /lib/systemd/system/pgcloak.service,
# /etc/pgcloak/pgcloak.yaml and /etc/default/pgcloak (conffiles),
# /usr/share/doc/pgcloak/{copyright,THIRD_PARTY_NOTICES.md,README.md}.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
export VERSION
arch=${1:-$(go env GOARCH)}
out=${OUT:-dist}
command -v dpkg-deb >/dev/null || { echo "deb: dpkg-deb not found (apt-get install dpkg)" >&2; exit 1; }

# A Debian version starts with a digit: v1.2.3 → 1.2.3; an untagged commit
# abc1234 → 0~gabc1234 (sorts before any release); -dirty → +dirty.
debver=${VERSION#v}
debver=${debver/-dirty/+dirty}
case $debver in
[0-9]*) debver=${debver//-/.} ;;
*) debver="0~g${debver//-/.}" ;;
esac

bin=dist/pgcloak-$VERSION-linux-$arch
[ -x "$bin" ] || packaging/release.sh "$arch"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -D -m 0755 "$bin" "$root/usr/bin/pgcloak"
install -D -m 0644 packaging/debian/pgcloak.service "$root/lib/systemd/system/pgcloak.service"
install -D -m 0640 packaging/debian/pgcloak.yaml "$root/etc/pgcloak/pgcloak.yaml"
install -D -m 0600 packaging/debian/default "$root/etc/default/pgcloak"
install -D -m 0644 packaging/debian/copyright "$root/usr/share/doc/pgcloak/copyright"
install -m 0644 THIRD_PARTY_NOTICES.md README.md LICENSE "$root/usr/share/doc/pgcloak/"
install -d -m 0755 "$root/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/"

# The glibc the binary needs: the newest GLIBC_ symbol version it imports.
objdump=objdump
case $arch in arm64) objdump=aarch64-linux-gnu-objdump ;; esac
command -v "$objdump" >/dev/null || objdump=objdump
glibc=$("$objdump" -T "$root/usr/bin/pgcloak" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
glibc=${glibc:-2.34}

(cd "$root" && find . -path ./DEBIAN -prune -o -type f ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
cat > "$root/DEBIAN/control" <<CONTROL
Package: pgcloak
Version: $debver
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-pgcloak maintainers <maintainers@pgcloak.invalid>}
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: libc6 (>= $glibc), adduser
Section: database
Priority: optional
Homepage: https://github.com/pgcloak/pgcloak
Description: PostgreSQL proxy for transparent column encryption
 pgcloak speaks PostgreSQL's wire protocol and encrypts the columns named in
 its configuration before they reach PostgreSQL, decrypting them on the way
 back; keys live in HashiCorp Vault. Applications change only their
 connection string.
 .
 The package installs a hardened systemd unit (pgcloak.service, running as
 the pgcloak system user) that is not enabled until the configuration in
 /etc/pgcloak/pgcloak.yaml has been edited.
CONTROL

mkdir -p "$out"
deb=$out/pgcloak_${debver}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
