# codebus: one image for every process (`codebus worker UNIT`, `codebus gateway`, and
# the operator commands `codebus dlq ...`, `codebus topology ...`).
#
#   docker build -t codebus .
#   docker run --rm codebus units
#   docker run --rm -e CODEBUS_AMQP_URL=... -e CODEBUS_REDIS_URL=... codebus worker deploy
#
# Every runtime dependency ships as a wheel for CPython 3.11 on x86_64 and arm64, so no
# compiler is needed. Configuration is CODEBUS_* environment variables (docs/operations.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A fixed, unprivileged uid/gid so that Kubernetes `runAsNonRoot` can verify it.
RUN groupadd --system --gid 10001 codebus \
 && useradd --system --uid 10001 --gid codebus --home-dir /home/codebus --create-home \
        --shell /usr/sbin/nologin codebus

# Build from a throw-away copy of the source (see .dockerignore), install, remove it.
COPY . /tmp/src
# Every tool server's libraries (one image for every unit); not the `embedded` extra:
# fakeredis is for the demo and tests, not for production.
RUN pip install --no-cache-dir "/tmp/src[docker,kubernetes,s3,scanner]" \
 && rm -rf /tmp/src

# The deploy unit resolves a relative `manifest_path` (default ./k8s/<app>/) against the
# working directory: mount manifests at /app/k8s.
WORKDIR /app
RUN chown codebus:codebus /app
USER 10001:10001

# 9464: worker /healthz, /readyz, /metrics (CODEBUS_HTTP_PORT). 8080: `codebus gateway`.
EXPOSE 9464 8080

# Liveness of a worker's HTTP endpoint; no curl in the slim image, so Python's urllib.
# CODEBUS_HTTP_PORT=0 turns the endpoint off; then there is nothing to check.
# The gateway serves /healthz on its own port (8080): override the check there
# (compose.yaml does). Kubernetes ignores HEALTHCHECK and uses the probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD port="${CODEBUS_HTTP_PORT:-9464}"; [ "$port" = "0" ] || python -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + sys.argv[1] + '/healthz', timeout=4)" "$port" || exit 1

ENTRYPOINT ["codebus"]
CMD ["--help"]
