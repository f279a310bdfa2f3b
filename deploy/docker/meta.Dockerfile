# robustmq-meta alone (for running the meta tier outside the operator). The operator's
# RobustMQCluster uses the combined image of robustmq.Dockerfile instead. Build from the
# repository root:
#   docker build -f deploy/docker/meta.Dockerfile -t ghcr.io/robustmq/robustmq-meta:0.1.0 .
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p meta-service --bin robustmq-meta \
 && cp target/release/robustmq-meta /robustmq-meta

# Debian slim (glibc and a shell), like robustmq.Dockerfile.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data robustmq \
 && mkdir -p /data && chown robustmq /data
COPY --from=build /robustmq-meta /usr/local/bin/robustmq-meta
USER 10001
VOLUME /data
EXPOSE 1228 8080
ENTRYPOINT ["/usr/local/bin/robustmq-meta"]
