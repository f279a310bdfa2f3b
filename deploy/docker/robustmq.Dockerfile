# The server image a RobustMQCluster runs (spec.image): robustmq-meta, robustmq-journal and
# robustmq-broker in one image; the operator picks the binary per tier with `command`.
# It needs /bin/sh: the journal's node id is derived from the pod ordinal by a shell.
# Build from the repository root:
#   docker build -f deploy/docker/robustmq.Dockerfile -t ghcr.io/robustmq/robustmq:0.1.0 .
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
ARG PACKAGES="-p meta-service -p journal -p broker"
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked $PACKAGES --bins \
 && mkdir /out \
 && cp target/release/robustmq-meta target/release/robustmq-journal target/release/robustmq-broker /out/

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data robustmq \
 && mkdir -p /data && chown robustmq /data
COPY --from=build /out/ /usr/local/bin/
USER 10001
VOLUME /data
# MQTT, MQTT/TLS, WS, WSS, Kafka, Kafka/TLS, meta gRPC, journal gRPC, admin HTTP.
EXPOSE 1883 8883 8083 8084 9092 9093 1228 1778 8080
# No entrypoint: the operator sets each tier's command (robustmq-meta, robustmq-journal,
# robustmq-broker).
