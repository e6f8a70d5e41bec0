# syntax=docker/dockerfile:1
# The calcmesh image: one binary, every subcommand, etcd support included.
#   docker build -t calcmesh:latest .
#   docker run --rm calcmesh:latest serve calculator --help
# Manifests: deploy/kubernetes; how to deploy: deploy/README.md.
#
# Where the binary comes from: the build stage below (the default), or a binary built outside,
#   --build-arg CALCMESH_BINARY=prebuilt --build-context host-binary=DIR   (DIR holds `calcmesh`)
# which is how deploy/containers.py builds the image on a machine that has no registry to pull
# rust:1-bookworm from. Either way the image is the runtime stage at the end.
ARG CALCMESH_BINARY=build

FROM rust:1-bookworm AS build
# etcd-client's build script needs protoc and the well-known types (calcmesh's own .proto files are
# compiled by protox).
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p calcmesh-cli --features etcd \
    && install -m 0755 target/release/calcmesh /usr/local/bin/calcmesh

FROM scratch AS prebuilt
COPY --from=host-binary calcmesh /usr/local/bin/calcmesh

FROM ${CALCMESH_BINARY} AS binary

FROM debian:bookworm-slim
# A fixed numeric user, so Kubernetes can check runAsNonRoot (the manifests run as 10001 too).
RUN groupadd --system --gid 10001 calcmesh \
    && useradd --system --uid 10001 --gid calcmesh --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin calcmesh
COPY --from=binary /usr/local/bin/calcmesh /usr/local/bin/calcmesh
USER 10001:10001
# 50051 calculator, 50050 evaluator (gRPC); 50081 plaintext grpc.health.v1 for probes;
# 9090 admin HTTP (/metrics, /healthz, /readyz). Each only when its flag asks for it.
EXPOSE 50051 50050 50081 9090
ENTRYPOINT ["calcmesh"]
CMD ["--help"]
