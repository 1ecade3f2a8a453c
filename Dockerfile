# syntax=docker/dockerfile:1
# sse-edge: multi-stage build -> small Debian runtime running as a non-root user.
#   docker build -t sse-edge .
#   docker run --rm -p 8080:8080 -p 9090:9090 sse-edge demo --listen 0.0.0.0:8080 --admin 0.0.0.0:9090

# The builder is rust:1 on bookworm so its glibc matches the bookworm-slim runtime.
# cmake builds pingora's native dependencies.
FROM rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sse-edge \
 && cp target/release/sse-edge /usr/local/bin/sse-edge

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin sse-edge
COPY --from=builder /usr/local/bin/sse-edge /usr/local/bin/sse-edge
COPY conf/sse-edge.yaml /etc/sse-edge/sse-edge.yaml
USER 10001:10001
# 8080: SSE/HTTP listener. 9090: admin (/metrics, /healthz, /readyz).
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sse-edge"]
CMD ["--config", "/etc/sse-edge/sse-edge.yaml"]
