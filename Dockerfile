# syntax=docker/dockerfile:1
# qrag-server image, two stages:
#   build:   Debian 12 (the distribution CI builds and tests on) + NVIDIA's CUDA 13 toolkit from NVIDIA's
#            Debian 12 repository = a CUDA 13 development image. The project is built with the very scripts
#            CI runs: deploy/install-deps.sh (the one dependency list) and deploy/build.sh (the one build
#            recipe), with no extra CMake flags, so the image cannot drift from what CI tests.
#   runtime: Debian 12 slim + the CUDA runtime libraries + exactly the Debian packages that own the shared
#            libraries the binaries link (computed in the build stage by deploy/runtime-packages.sh, so there
#            is no second package list to keep in step). Non-root, health-checked through `qrag health`.
#
#   docker build -t qrag:latest .
#   docker run --gpus all -p 50051:50051 -p 8000:8000 -p 9400:9400 -v /path/to/models:/models:ro \
#       -v qrag-data:/var/lib/qrag -e QRAG_MODEL=/models/stories260K.bin qrag:latest
# Without a GPU the same image runs on the CPU backend (omit --gpus). See docs/deploy.md.
ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_SLIM_IMAGE=debian:12-slim
ARG CUDA_VERSION=13-0

FROM ${DEBIAN_IMAGE} AS build
ARG CUDA_VERSION
# Set QRAG_RUN_TESTS=1 to run the CPU unit tests inside the build (slower; CI runs the whole suite anyway).
ARG QRAG_RUN_TESTS=0
ENV DEBIAN_FRONTEND=noninteractive
COPY deploy/install-cuda-toolkit.sh /src/deploy/install-cuda-toolkit.sh
RUN bash /src/deploy/install-cuda-toolkit.sh devel "${CUDA_VERSION}"
ENV PATH=/usr/local/cuda/bin:${PATH}
COPY deploy/install-deps.sh /src/deploy/install-deps.sh
RUN bash /src/deploy/install-deps.sh
COPY . /src
WORKDIR /src
RUN bash deploy/build.sh
RUN if [ "${QRAG_RUN_TESTS}" = "1" ]; then ctest --test-dir build -L unit --output-on-failure; fi
# The programs the image ships, and the Debian packages their shared libraries come from.
RUN mkdir -p /opt/qrag/bin /opt/qrag/etc \
 && for b in server/tools/qrag-server server/tools/qrag-run server/tools/qrag-make-model client/qrag; do \
      install -m 0755 "build/$b" /opt/qrag/bin/; \
    done \
 && if [ -x build/server/tools/qrag-quant ]; then install -m 0755 build/server/tools/qrag-quant /opt/qrag/bin/; fi \
 && install -m 0644 deploy/qrag.yaml /opt/qrag/etc/qrag.yaml \
 && bash deploy/runtime-packages.sh /opt/qrag/bin/* > /opt/qrag/etc/runtime-packages.txt \
 && cat /opt/qrag/etc/runtime-packages.txt

FROM ${DEBIAN_SLIM_IMAGE} AS runtime
ARG CUDA_VERSION
ENV DEBIAN_FRONTEND=noninteractive
COPY deploy/install-cuda-toolkit.sh /tmp/install-cuda-toolkit.sh
COPY --from=build /opt/qrag/etc/runtime-packages.txt /tmp/runtime-packages.txt
RUN bash /tmp/install-cuda-toolkit.sh runtime "${CUDA_VERSION}" \
 && apt-get update \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/install-cuda-toolkit.sh /tmp/runtime-packages.txt \
 && useradd --system --uid 10001 --home-dir /var/lib/qrag --shell /usr/sbin/nologin qrag \
 && mkdir -p /models /var/lib/qrag \
 && chown qrag:qrag /var/lib/qrag
COPY --from=build /opt/qrag /opt/qrag
ENV PATH=/opt/qrag/bin:${PATH} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    QRAG_MODEL=/models/stories260K.bin \
    QRAG_LISTEN=0.0.0.0:50051 \
    QRAG_METRICS_LISTEN=0.0.0.0:9400 \
    QRAG_HTTP_LISTEN=0.0.0.0:8000 \
    QRAG_DATA_DIR=/var/lib/qrag \
    QRAG_SERVER=127.0.0.1:50051
USER qrag
WORKDIR /var/lib/qrag
# gRPC (qrag.v1, grpc.health.v1, reflection), the OpenAI-compatible HTTP API and Prometheus /metrics.
EXPOSE 50051 8000 9400
# The model file(s) (read-only) and the durable RAG collections.
VOLUME ["/models", "/var/lib/qrag"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["qrag", "health", "--server", "127.0.0.1:50051"]
# Flags: deploy/qrag.yaml (environment variables above fill it in); extra `docker run` arguments are
# appended and override it, e.g. `docker run ... qrag:latest --quant fp8`.
ENTRYPOINT ["qrag-server", "--config", "/opt/qrag/etc/qrag.yaml"]
