# The image `traceforge k8s` runs: the binary and the shipped scenarios, golden files and static
# files, on a distroless base as a non-root user.
#
#   docker build -t traceforge:0.1.0 .
#
# Scenarios with services under test need those services' runtimes too: build your own image
# FROM this one (or copy /usr/local/bin/traceforge into yours).

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin traceforge

FROM gcr.io/distroless/cc-debian12:nonroot
WORKDIR /app
COPY --from=build /src/target/release/traceforge /usr/local/bin/traceforge
COPY scenarios ./scenarios
COPY golden ./golden
COPY static ./static
COPY traceforge.schema.json ./
# distroless's nonroot user (65532), which the manifests of `traceforge k8s` name too.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/traceforge"]
CMD ["--help"]
