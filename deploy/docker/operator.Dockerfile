# robustmq-operator. Build from the repository root:
#   docker build -f deploy/docker/operator.Dockerfile -t ghcr.io/robustmq/robustmq-operator:0.1.0 .
# kube uses rustls and proto vendors protoc, so the builder needs no system OpenSSL or protoc.
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p operator --bin robustmq-operator \
 && cp target/release/robustmq-operator /robustmq-operator

# Static-enough for distroless cc (glibc); runs as the non-root uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /robustmq-operator /usr/local/bin/robustmq-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/robustmq-operator"]
CMD ["run"]
