# Builds the ers-bridge binary; the image runs any subcommand (default: --help).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin ers-bridge

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/ers-bridge /usr/local/bin/ers-bridge
COPY samples ./samples
COPY mappings ./mappings
ENTRYPOINT ["ers-bridge"]
CMD ["--help"]
