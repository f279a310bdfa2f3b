# robustmq-journal alone (for running the journal tier outside the operator). The operator's
# RobustMQCluster uses the combined image of robustmq.Dockerfile instead. Build from the
# repository root:
#   docker build -f deploy/docker/journal.Dockerfile -t ghcr.io/robustmq/robustmq-journal:0.1.0 .
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p journal --bin robustmq-journal \
 && cp target/release/robustmq-journal /robustmq-journal

# Debian slim (glibc and a shell), like robustmq.Dockerfile.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data robustmq \
 && mkdir -p /data && chown robustmq /data
COPY --from=build /robustmq-journal /usr/local/bin/robustmq-journal
USER 10001
VOLUME /data
EXPOSE 1778 8080
ENTRYPOINT ["/usr/local/bin/robustmq-journal"]
