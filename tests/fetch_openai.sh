#!/usr/bin/env bash
# Installs the official OpenAI Python SDK (PyPI `openai`, pinned) for the HTTP API tests, once, into a folder
# of the cache that the tests put first on sys.path (no virtual environment needed; Debian's python3 stays
# untouched):
#   ${QRAG_CACHE_DIR:-~/.cache/qrag}/pylib/openai-$VERSION
# Prints that folder on stdout when it is ready. Exit 0 when ready, or when PyPI cannot be reached and
# QRAG_REQUIRE_SHARED is not 1 (the tests then skip with a message); exit 1 otherwise.
set -uo pipefail

readonly VERSION=3.60.0
cache="${QRAG_CACHE_DIR:-$HOME/.cache/qrag}"
dest="$cache/pylib/openai-$VERSION"

give_up() {
  echo "fetch_openai: $*" >&2
  if [ "${QRAG_REQUIRE_SHARED:-0}" = "1" ]; then exit 1; fi
  echo "fetch_openai: the OpenAI SDK tests will skip (QRAG_REQUIRE_SHARED=1 makes this an error)" >&2
  exit 0
}

works() {  # the SDK imports from that folder, at the pinned version
  PYTHONPATH="$1" /usr/bin/python3 -c "import openai, sys; sys.exit(openai.__version__ != '$VERSION')" 2>/dev/null
}

if works "$dest"; then echo "$dest"; exit 0; fi
mkdir -p "$cache/pylib" || give_up "cannot create $cache/pylib"
tmp="$(mktemp -d "$cache/pylib/openai.XXXXXX")" || give_up "cannot create a temporary folder in $cache/pylib"
trap 'rm -rf "$tmp"' EXIT
PIP_ROOT_USER_ACTION=ignore /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
  --target "$tmp" "openai==$VERSION" >&2 || give_up "pip install openai==$VERSION failed (no network or no PyPI access?)"
works "$tmp" || give_up "openai==$VERSION installed into $tmp but does not import"
rm -rf "$dest" && mv "$tmp" "$dest" || give_up "cannot move the SDK into $dest"
trap - EXIT
echo "fetch_openai: installed $dest" >&2
echo "$dest"
