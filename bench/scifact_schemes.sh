#!/usr/bin/env bash
# BEIR SciFact retrieval with all-MiniLM-L6-v2 under each weight scheme: encodes the 5183-document corpus
# once per scheme (bench/rag_bench --encode-range, saved embeddings), then evaluates the 300 test queries
# (nDCG@10, recall@100; exact fp32 and int8 index) into OUT_DIR/<scheme>.json, which `qrag-quant report
# --scifact-dir OUT_DIR` and docs/benchmarks.md read. Resumable: a scheme whose .emb exists is not
# re-encoded. Schemes run as parallel single-thread processes (JOBS, default: the number of cores).
#
#   bash bench/scifact_schemes.sh OUT_DIR [scheme ...]     schemes: fp32 bf16 fp8 int8 w4 log4.3 2:4
#                                                          (default: fp32 fp8 int8 w4 log4.3 2:4)
# Environment: QRAG_MINILM_DIR (default ~/.cache/qrag/all-MiniLM-L6-v2, as tests/fetch_minilm.sh leaves it),
# QRAG_SHARED_DIR (default ../shared), QRAG_BUILD_DIR (default build), JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
out="$1"
shift
schemes=("$@")
[ ${#schemes[@]} -gt 0 ] || schemes=(fp32 fp8 int8 w4 log4.3 2:4)
model="${QRAG_MINILM_DIR:-$HOME/.cache/qrag/all-MiniLM-L6-v2}"
shared="${QRAG_SHARED_DIR:-../shared}"
bench="${QRAG_BUILD_DIR:-build}/bench/rag_bench"
[ -x "$bench" ] || { echo "scifact_schemes: $bench not built (bash deploy/build.sh)" >&2; exit 1; }
[ -f "$model/model.safetensors" ] || { echo "scifact_schemes: no model in $model (bash tests/fetch_minilm.sh)" >&2; exit 1; }
[ -f "$shared/data/scifact/corpus.jsonl" ] || { echo "scifact_schemes: no $shared/data/scifact" >&2; exit 1; }
mkdir -p "$out"

# The rag_bench arguments of a scheme; its file name (':' is kept out of file names).
scheme_args() {
  case "$1" in
    fp32 | bf16 | fp8 | int8 | w4) echo "--quant $1" ;;
    log4.3 | 2:4) echo "--quant fp32 --weight-scheme $1" ;;
    *) echo "scifact_schemes: unknown scheme '$1' (fp32 bf16 fp8 int8 w4 log4.3 2:4)" >&2; return 1 ;;
  esac
}
file_name() { echo "${1//:/of}"; }

run_scheme() {
  local scheme="$1" args name
  args="$(scheme_args "$scheme")" || return 1
  name="$(file_name "$scheme")"
  if [ ! -s "$out/$name.emb" ]; then
    # shellcheck disable=SC2086
    "$bench" --model "$model" --shared "$shared" $args --threads 1 --encode-range 0:1000000 \
      --save-embeddings "$out/$name.emb.part" >"$out/$name.encode.log" 2>&1
    mv "$out/$name.emb.part" "$out/$name.emb"
  fi
  # shellcheck disable=SC2086
  "$bench" --model "$model" --shared "$shared" $args --threads 1 --load-embeddings "$out/$name.emb" \
    --json "$out/$name.json" >"$out/$name.eval.log" 2>&1
  echo "$scheme: $(grep -h 'index exact fp32:' "$out/$name.eval.log")"
}

for s in "${schemes[@]}"; do scheme_args "$s" >/dev/null; done
export -f run_scheme scheme_args file_name
export out model shared bench
printf '%s\n' "${schemes[@]}" | xargs -P "${JOBS:-$(nproc)}" -I{} bash -c 'run_scheme "$1"' _ {}
