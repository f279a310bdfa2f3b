# robustmq-broker alone (for running the broker tier outside the operator). The operator's
# RobustMQCluster uses the combined image of robustmq.Dockerfile instead. Build from the
# repository root:
#   docker build -f deploy/docker/broker.Dockerfile -t ghcr.io/robustmq/robustmq-broker:0.1.0 .
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p broker --bin robustmq-broker \
 && cp target/release/robustmq-broker /robustmq-broker

# Debian slim (glibc and a shell), like robustmq.Dockerfile.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data robustmq \
 && mkdir -p /data && chown robustmq /data
COPY --from=build /robustmq-broker /usr/local/bin/robustmq-broker
USER 10001
EXPOSE 1883 8883 8083 8084 9092 9093 8080
ENTRYPOINT ["/usr/local/bin/robustmq-broker"]
