# syntax=docker/dockerfile:1
# The two images of a release, from one builder stage (images/README.md):
#
#   docker build --target node     -t ghcr.io/beacon-operator/beacon-node:0.1.0 .
#   docker build --target operator -t ghcr.io/beacon-operator/beacon-operator:0.1.0 .
#
# Each is one static binary (musl) on distroless/static: no shell, no package manager, user
# 65532, the binary as the entrypoint (the pod spec's args are its arguments).

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
ENV CARGO_TARGET_DIR=/cache/target
# The same script builds the binaries outside Docker; the caches keep crates and compiled
# dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/cache/target \
    images/build-static.sh /out beacon-node beacon-operator

FROM ${RUNTIME_IMAGE} AS node
COPY --from=builder /out/beacon-node /usr/local/bin/beacon-node
USER 65532:65532
EXPOSE 4444 8080 8443
ENTRYPOINT ["/usr/local/bin/beacon-node"]

FROM ${RUNTIME_IMAGE} AS operator
COPY --from=builder /out/beacon-operator /usr/local/bin/beacon-operator
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/beacon-operator"]
