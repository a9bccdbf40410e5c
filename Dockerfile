# drc container image: a build stage with the Rust toolchain, then a slim Debian runtime that runs
# the drc binary as the unprivileged user `drc`. The topology file is mounted at /etc/drc
# (docs/deploy.md). Build:  docker build -t drc .
# Run:    docker run -v $PWD/config:/etc/drc:ro drc run --config /etc/drc/drc.toml --center a

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# make: jemalloc's build (tikv-jemalloc-sys) runs it; the image has the C compiler already.
# `drc --version` shows the revision as "unknown": .dockerignore leaves .git out of the context.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p drc \
 && strip target/release/drc

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system drc \
 && useradd --system --gid drc --home-dir /var/lib/drc --create-home --shell /usr/sbin/nologin drc \
 && mkdir -p /etc/drc
COPY --from=build /src/target/release/drc /usr/local/bin/drc
USER drc
WORKDIR /var/lib/drc
VOLUME ["/etc/drc", "/var/lib/drc"]
EXPOSE 9400
ENTRYPOINT ["drc"]
CMD ["--help"]
