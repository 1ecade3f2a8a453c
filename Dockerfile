# syntax=docker/dockerfile:1
# sse-edge: multi-stage build -> small Debian runtime running as a non-root user.
#   docker build -t sse-edge .
#   docker run --rm -p 8080:8080 -p 9090:9090 sse-edge demo --listen 0.0.0.0:8080 --admin 0.0.0.0:9090
#   docker run --rm -p 8080:8080 -p 9090:9090 -v ./my.yaml:/etc/sse-edge/sse-edge.yaml:ro sse-edge
# Without a mounted file the image runs conf/docker.yaml (listeners on 0.0.0.0, upstreams
# at the compose service `legacy:8000`).

# The builder is rust:1 on bookworm so its glibc matches the bookworm-slim runtime.
# cmake builds pingora's native dependencies.
FROM rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cargo.toml keeps `debug = 1` in the release profile for profiling benchmarks; the image
# ships a release binary without debug info and without symbols instead.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sse-edge \
 && cp target/release/sse-edge /usr/local/bin/sse-edge \
 && strip /usr/local/bin/sse-edge

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin sse-edge
COPY --from=builder /usr/local/bin/sse-edge /usr/local/bin/sse-edge
COPY conf/docker.yaml /etc/sse-edge/sse-edge.yaml
COPY LICENSE /usr/share/doc/sse-edge/LICENSE
# Container logs go to a file or a log driver: no colour codes in them.
ENV NO_COLOR=1
USER 10001:10001
# 8080: SSE/HTTP listener. 9090: admin (/metrics, /healthz, /readyz).
EXPOSE 8080 9090
# Ready = the admin listener answers /readyz with 2xx (503 while draining after SIGTERM).
# The slim image has no curl: the binary asks itself (a blocking GET, 2s deadline).
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/sse-edge", "healthcheck", "--url", "http://127.0.0.1:9090/readyz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sse-edge"]
CMD ["--config", "/etc/sse-edge/sse-edge.yaml"]
