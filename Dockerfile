# syntax=docker/dockerfile:1.7
# One runtime image holding every cdc-pipeline binary: capture, masker, sink-postgres, sink-clickhouse,
# sink-timescaledb and cdcctl. Pick the service with the command, e.g.
#   docker run --rm -v $PWD/pipeline.yaml:/etc/cdc/pipeline.yaml:ro cdc-pipeline masker
# Every service reads /etc/cdc/pipeline.yaml (CDC_CONFIG) and serves /metrics, /livez and /readyz on its
# admin.listen_addr (9101 capture, 9102 masker, 9103 sink-postgres, 9104 sink-clickhouse, 9105 sink-timescaledb).
#
# Build: docker build -t cdc-pipeline .        (BuildKit; cargo's registry and target dir are cache mounts)

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- builder: the workspace in release mode --------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# librdkafka is built from source by rdkafka-sys (its own configure: make + a C/C++ compiler, both in the
# image) and links the system OpenSSL and zlib. proto/admin.proto is compiled by protox (pure Rust): no protoc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Manifests first: a change to a source file does not invalidate the dependency fetch layer.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY services services
COPY tests tests
COPY proto proto
COPY schemas schemas
COPY config config
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p capture -p masker -p sink-postgres -p sink-clickhouse -p sink-timescaledb -p cdcctl \
 && mkdir -p /out \
 && for bin in capture masker sink-postgres sink-clickhouse sink-timescaledb cdcctl; do \
        cp "target/release/$bin" /out/; \
    done

# ---- runtime: slim Debian with only the shared libraries the binaries link ---------------------------------
# `ldd` of every binary: libssl.so.3 + libcrypto.so.3 (libssl3), libz.so.1 (zlib1g), libgcc_s, libm, libc.
# ca-certificates lets TLS to Kafka, the databases and Vault verify public CAs. No curl or shell tools are
# added: Kubernetes probes and Prometheus use HTTP (/livez, /readyz, /metrics) directly.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cdc \
 && useradd --system --uid 10001 --gid cdc --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin cdc \
 && mkdir -p /etc/cdc \
 && chown -R root:root /etc/cdc
COPY --from=builder /out/ /usr/local/bin/
COPY config/pipeline.example.yaml /etc/cdc/pipeline.example.yaml
COPY crates/cdc-mask/masking-policy.example.yaml /etc/cdc/masking-policy.example.yaml
ENV CDC_CONFIG=/etc/cdc/pipeline.yaml
# Numeric user so runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 9101 9102 9103 9104 9105
CMD ["cdcctl", "--help"]
