# syntax=docker/dockerfile:1
#
# TensorWasm server image.
#   docker build -t ghcr.io/craton-co/tensor-wasm:v0.1.0 .
#   docker run -d --name tensor-wasm --env-file /etc/tensor-wasm/env \
#     -p 8080:8080 -v /var/lib/tensor-wasm:/var/lib/tensor-wasm \
#     ghcr.io/craton-co/tensor-wasm:v0.1.0
# A bind-mounted /var/lib/tensor-wasm must be writable by uid/gid 10001:
#   sudo install -d -m 0750 -o 10001 -g 10001 /var/lib/tensor-wasm
#
# GPU: the binary loads libcuda at run time, so this image runs on CPU
# anywhere and on CUDA under the NVIDIA Container Toolkit
# (`docker run --gpus all ...`), which injects the driver libraries.

ARG RUST_IMAGE=rust:1.95-trixie
ARG RUNTIME_IMAGE=debian:trixie-slim

# ---- build ------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# rust-toolchain.toml pins the toolchain; rustup installs it on first use.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tensor-wasm \
 && install -D -m 0755 target/release/tensor-wasm /out/tensor-wasm

# ---- runtime ----------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG VERSION=v0.1.0
LABEL org.opencontainers.image.title="tensor-wasm" \
      org.opencontainers.image.description="GPU-accelerated multi-tenant serverless WebAssembly runtime" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# curl only for HEALTHCHECK; ca-certificates for an https OTLP endpoint.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tensor-wasm \
 && useradd --system --uid 10001 --gid tensor-wasm \
      --home-dir /var/lib/tensor-wasm --shell /usr/sbin/nologin tensor-wasm \
 && install -d -m 0750 -o tensor-wasm -g tensor-wasm /var/lib/tensor-wasm

COPY --from=builder /out/tensor-wasm /usr/local/bin/tensor-wasm

ENV TENSOR_WASM_LISTEN=0.0.0.0:8080 \
    TENSOR_WASM_DATA_DIR=/var/lib/tensor-wasm \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER tensor-wasm:tensor-wasm
WORKDIR /var/lib/tensor-wasm
VOLUME ["/var/lib/tensor-wasm"]
EXPOSE 8080
STOPSIGNAL SIGTERM

# /healthz needs no token. Assumes the default listen port.
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s --retries=3 \
    CMD curl -fsS --max-time 1 http://127.0.0.1:8080/healthz || exit 1

ENTRYPOINT ["/usr/local/bin/tensor-wasm"]
CMD ["serve"]
