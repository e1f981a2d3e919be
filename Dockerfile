# dockhand's container image: `docker build -t dockhand:local .`, or `docker compose up
# --build` for the local stack. docs/deploy-local.md shows how to run it.
#
# The build stage is Debian 12 (bookworm), like the runtime image, so the binary's glibc
# matches. The runtime is distroless/cc: glibc, libgcc, CA certificates (the AWS and GitHub
# clients use rustls with the system's root certificates) and a `nonroot` user, no shell.

FROM rust:1.95-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or Cargo.lock
# change. Cargo needs every target the manifest declares, so stubs stand in for them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches/load \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/load/main.rs \
    && echo 'fn main() {}' > benches/ingress.rs \
    && cargo build --locked --release --bin dockhand \
    && rm -rf src

# sqlx::migrate! embeds migrations/ at compile time, so it must be here before the build.
COPY migrations ./migrations
COPY src ./src
# The copied sources can be older than the stub build; make sure Cargo rebuilds the crate.
RUN touch src/main.rs src/lib.rs \
    && cargo build --locked --release --bin dockhand \
    && cp target/release/dockhand /usr/local/bin/dockhand

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/dockhand /usr/local/bin/dockhand
# nonroot (65532) owns its home: relative paths in a configuration (the embedded queue's
# data/queue.db, a sqlite:// store) land there. Mount a volume at /home/nonroot/data to
# keep them.
WORKDIR /home/nonroot
USER 65532:65532
# server.listen (webhooks) and admin.listen (/metrics, /healthz, /readyz).
EXPOSE 8080 9090
# Give the configuration with --config FILE, --config ssm:/NAME or DOCKHAND_CONFIG, and
# DOCKHAND_* variables; logs are JSON (no terminal).
ENTRYPOINT ["/usr/local/bin/dockhand"]
CMD ["serve"]
