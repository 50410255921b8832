#!/usr/bin/env bash
# Prints, one per line and sorted, the Debian packages that own the shared libraries the given programs
# load (ldd + dpkg -S). The Dockerfile's runtime stage installs exactly these, so the image needs no second
# hand-kept package list. Fails (exit 1) when a library is missing or belongs to no package, naming it.
# The GPU driver's libraries (libcuda, libnvidia-ml) come from the host and are skipped; so are the
# libraries of a CUDA toolkit installed outside dpkg (/usr/local/cuda*), which the image installs itself.
#
#   runtime-packages.sh PROGRAM...
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: runtime-packages.sh PROGRAM..." >&2; exit 2; }
declare -A libs=()
status=0
for program in "$@"; do
  [ -x "$program" ] && [ -f "$program" ] || { echo "runtime-packages: $program is not an executable file" >&2; exit 1; }
  while read -r line; do
    # "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)", "linux-vdso.so.1 (0x...)", "/lib64/ld-... (0x...)"
    case "$line" in
      *"=> not found"*) echo "runtime-packages: $program: ${line%% *} not found" >&2; status=1 ;;
      *"=>"*) libs["$(echo "$line" | awk '{print $3}')"]=1 ;;
      /*) libs["$(echo "$line" | awk '{print $1}')"]=1 ;;
    esac
  done < <(ldd "$program")
done
[ $status -eq 0 ] || exit $status

declare -A packages=() owners=()
wanted=()
for lib in "${!libs[@]}"; do
  case "$lib" in
    */libcuda.so*|*/libnvidia-ml.so*) ;;
    /usr/local/cuda*) echo "runtime-packages: $lib: CUDA toolkit outside dpkg, skipped" >&2 ;;
    *) wanted+=("$lib") ;;
  esac
done
# dpkg knows a file by the path it installed: ask (in one dpkg call per round, it is slow) for the path ldd
# printed, then with /lib -> /usr/lib (merged /usr), then the resolved symlink.
for round in plain usr resolved; do
  queries=()
  declare -A query_of=()
  for lib in "${wanted[@]}"; do
    [ -n "${owners[$lib]:-}" ] && continue
    case $round in
      plain) q="$lib" ;;
      usr) q="/usr$lib" ;;
      resolved) q="$(readlink -f "$lib")" ;;
    esac
    queries+=("$q")
    query_of["$q"]="$lib"
  done
  [ ${#queries[@]} -gt 0 ] || break
  while IFS= read -r line; do
    # "package[:arch][, package2]: /path"
    path="${line##*: }"
    package="${line%%: *}"
    package="${package%%,*}"
    lib="${query_of[$path]:-}"
    [ -n "$lib" ] && owners["$lib"]="${package%%:*}"
  done < <(dpkg -S "${queries[@]}" 2>/dev/null || true)
  unset query_of
done
for lib in "${wanted[@]}"; do
  if [ -z "${owners[$lib]:-}" ]; then
    echo "runtime-packages: $lib belongs to no Debian package" >&2
    status=1
  else
    packages["${owners[$lib]}"]=1
  fi
done
[ $status -eq 0 ] || exit $status
printf '%s\n' "${!packages[@]}" | sort
