#!/usr/bin/env bash
# The one list of Debian packages qrag needs, used by .ci/run, by users, and (later) by the Dockerfile.
# Idempotent and non-interactive: installs only what is missing. Needs root (or sudo).
#
#   QRAG_DEPS_NO_UPDATE=1  skip `apt-get update` (offline mirrors, repeated runs).
#
# The CUDA toolkit is not installed here: it comes from NVIDIA's images or the host. When nvcc is found,
# CMake builds the CUDA backend as well; without it the CPU backend alone is built.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates curl
  # the layer libraries (common, quant, backend, model, engine, rag: docs/architecture.md "Layers")
  libabsl-dev libsentencepiece-dev nlohmann-json3-dev libpcre2-dev libicu-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # qrag_api / qrag_client (gRPC API, metrics) and RAG storage
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc grpc-proto
  prometheus-cpp-dev libsqlite3-dev libpq-dev
  # the PostgreSQL store's tests start a real server (initdb into a temporary directory)
  postgresql
  # the HTTP server under /metrics and the OpenAI API (server/http/): Boost.Beast/Asio (header-only) and
  # OpenSSL for HTTPS
  libboost-dev libssl-dev
  # FAISS HNSW / IVF indexes of RAG collections (static libfaiss.a; pulls BLAS, LAPACK; OpenMP from gcc)
  libfaiss-dev
  # OpenBLAS (pthreads): the RAG embedder's and exact index's fp32 GEMMs (CpuBackendOptions::blas); installing
  # it also makes it the system BLAS that FAISS uses
  libopenblas-dev
  # oneDNN: the RAG embedder's int8 GEMMs on VNNI (dnnl_gemm_s8s8s32)
  libdnnl-dev
  # qrag-server --config FILE.yaml
  libyaml-cpp-dev
  # command-line flags and --help of every program (CLI11, header-only; server/common/cli.h)
  libcli11-dev
  # line editing and history of `qrag chat` (BSD-licensed libedit, readline-compatible API)
  libedit-dev
  # helpers for the test suite (real-file checks written in Python); matplotlib draws the quantization
  # report's plots (qrag-quant report, tests/tools/qrag_quant_test.py)
  python3 python3-numpy python3-grpcio python3-protobuf python3-yaml python3-matplotlib
  # the README's OpenAI SDK example installs `openai` into a virtual environment
  python3-venv
  # certificates for the TLS tests (tests/integration/security_test.py)
  openssl
  # Prometheus server and promtool for the metrics tests (tests/integration/metrics_test.py)
  prometheus
  # the hardening builds of CI (tests/run-hardening.sh): clang with its sanitizer and libFuzzer runtimes,
  # LLVM's OpenMP for FAISS under clang, llvm-symbolizer for readable reports
  clang libclang-rt-14-dev libomp-dev llvm
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
if [ "${QRAG_DEPS_NO_UPDATE:-0}" != "1" ]; then
  $SUDO apt-get update -qq
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
