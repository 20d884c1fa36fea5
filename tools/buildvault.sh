#!/bin/sh
# buildvault.sh builds the Vault v1.13.0 dev server used by the integration
# tests into the pgcloak cache directory and prints its path. It reuses an
# existing binary. The cache directory is $PGCLOAK_CACHE, else
# $XDG_CACHE_HOME/pgcloak, else ~/.cache/pgcloak. The first build takes about
# six minutes; integration/harness.BuildVault does the same from Go.
set -eu
version=v1.13.0
cache=${PGCLOAK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgcloak}
dir=$cache/vault-$version
bin=$dir/vault
mkdir -p "$dir"
if [ ! -x "$bin" ]; then
	cd "$(dirname "$0")/vault"
	# Same lock file as harness.BuildVault, so concurrent builders wait.
	exec 9>"$dir/.lock"
	flock 9
	if [ ! -x "$bin" ]; then
		GOFLAGS=-mod=mod go build -o "$bin.tmp" github.com/hashicorp/vault
		mv "$bin.tmp" "$bin"
	fi
fi
echo "$bin"
