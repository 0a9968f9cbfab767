# Multi-stage build of the mcbot binary; the runtime image holds only the binary, its config and a data volume.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The commit the metrics and error reports name: `docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD)`.
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=${GIT_COMMIT}
RUN cargo build --release --locked --bin mcbot

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini && rm -rf /var/lib/apt/lists/*
# A fixed non-root uid/gid, so Kubernetes' runAsNonRoot can check it and mounted volumes can be chowned to it.
RUN groupadd --system --gid 10001 mcbot && useradd --system --uid 10001 --gid 10001 --home /app mcbot \
    && mkdir -p /app/data && chown mcbot:mcbot /app/data
WORKDIR /app
COPY --from=build /src/target/release/mcbot /usr/local/bin/mcbot
COPY config ./config
USER 10001:10001
VOLUME ["/app/data"]
# Admin HTTP server (/metrics, /healthz, /readyz); set MCBOT_HTTP__LISTEN=0.0.0.0:9184 to reach it from outside.
EXPOSE 9184
# The slim image has no curl: the binary asks its own admin server (GET /healthz on http.listen; a wildcard
# listen address is asked on loopback) and exits 0 or 1. Turning http.listen off makes the container unhealthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["mcbot", "health", "--probe"]
# tini forwards SIGTERM so the scheduler finishes its running job and exits 0.
ENTRYPOINT ["/usr/bin/tini", "--", "mcbot"]
CMD ["scheduler"]
