# syntax=docker/dockerfile:1
# nodewright controller image: built with the pinned Rust toolchain, run from distroless as non-root.

FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# aws-lc-rs (TLS for kube and the AWS SDK) compiles C code.
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ make && rm -rf /var/lib/apt/lists/*

# Dependency layer: build against placeholder sources so that only a change to the manifests
# or the lockfile rebuilds the (large) dependency tree.
COPY Cargo.toml Cargo.lock ./
COPY crates/scheduling/Cargo.toml crates/scheduling/Cargo.toml
RUN mkdir -p src benches crates/scheduling/src crates/scheduling/benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs crates/scheduling/src/lib.rs \
 && echo 'fn main() {}' > crates/scheduling/benches/plan.rs \
 && echo 'fn main() {}' > benches/controller.rs \
 && echo 'fn main() {}' > benches/consolidation.rs \
 && cargo build --release --locked \
 && rm -rf src benches crates/scheduling/src crates/scheduling/benches

COPY crates crates
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs crates/scheduling/src/lib.rs \
 && cargo build --release --locked --bin nodewright \
 && cp target/release/nodewright /nodewright

# Pinned by digest, since the :nonroot tag moves with every distroless rebuild. To refresh:
#   crane digest gcr.io/distroless/cc-debian12:nonroot
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /nodewright /usr/local/bin/nodewright
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["nodewright", "controller"]
