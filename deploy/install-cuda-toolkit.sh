#!/usr/bin/env bash
# Installs NVIDIA's CUDA toolkit on Debian 12 from NVIDIA's own apt repository: the compiler and
# development libraries qrag's CUDA backend builds with ("devel"), or only the libraries it runs with
# ("runtime"). Used by the Dockerfile; on a workstation, install the toolkit the way NVIDIA documents for
# your distribution instead. The GPU driver (libcuda, libnvidia-ml) is never installed here: it comes from
# the host (NVIDIA Container Toolkit: `docker run --gpus all`, Kubernetes' NVIDIA device plugin).
#
#   install-cuda-toolkit.sh devel|runtime [VERSION]     VERSION as in package names, default 13-0
set -euo pipefail
kind="${1:?usage: install-cuda-toolkit.sh devel|runtime [VERSION]}"
version="${2:-13-0}"
case "$kind" in
  devel)   packages=(cuda-nvcc-$version cuda-cudart-dev-$version cuda-cccl-$version libcublas-dev-$version
                     cuda-nvml-dev-$version) ;;
  runtime) packages=(cuda-cudart-$version libcublas-$version) ;;
  *) echo "install-cuda-toolkit.sh: unknown kind '$kind' (devel or runtime)" >&2; exit 2 ;;
esac
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends ca-certificates curl
keyring=/tmp/cuda-keyring.deb
curl -fsSL -o "$keyring" https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb
dpkg -i "$keyring"
rm -f "$keyring"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"
# /usr/local/cuda -> the installed version, as NVIDIA's images have it.
if [ ! -e /usr/local/cuda ]; then ln -s "/usr/local/cuda-${version/-/.}" /usr/local/cuda; fi
echo "/usr/local/cuda/lib64" > /etc/ld.so.conf.d/qrag-cuda.conf
ldconfig
rm -rf /var/lib/apt/lists/*
echo "install-cuda-toolkit: $kind ${packages[*]}"
