# flowpbx in one container, configured by its environment (README "Configuration"); the
# seed's commands, from the repository's root:
#   docker build -t ait-core/telephony .
#   docker run -p 3020:3020 --env-file .env ait-core/telephony
# or with Redis and PostgreSQL beside it: docker compose up (docker-compose.yml).
# docs/operations.md § 1 explains it; scripts/lint-container lints this file, and
# tests/test_container.py runs the final stage's command, environment and health check
# outside a container.

# Build stage: the locked runtime dependencies (requirements/main.txt, every file checked
# against its hash) and a wheel of flowpbx built with the locked build backend, installed
# into the virtualenv /opt/venv, which is all the final stage takes from here.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/main.txt requirements/build.txt requirements/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements/build.txt \
    && python -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-cache-dir \
        --require-hashes -r requirements/main.txt
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-cache-dir --no-deps \
        /wheels/flowpbx-*.whl \
    && /opt/build/bin/pip --python /opt/venv/bin/python check

# Final stage: Python, the virtualenv (no pip, no compiler) and the flows, run by an
# unprivileged user with a fixed uid and gid, 10001, for which volumes can be prepared.
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 flowpbx \
    && useradd --system --uid 10001 --gid flowpbx --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin flowpbx \
    && mkdir -p /app/data \
    && chown flowpbx:flowpbx /app/data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY flows ./flows
# /app/data, the one writable place: the SQLite database when neither DB_HOST nor
# DATABASE_URL is set, and the pid file `flowpbx reload` (docker exec) reads.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=3020 \
    FLOWPBX_FLOWS_DIR=/app/flows \
    FLOWPBX_DB_PATH=/app/data/flowpbx.sqlite3 \
    FLOWPBX_RUN_DIR=/app/data
VOLUME ["/app/data"]
USER 10001:10001
EXPOSE 3020
# Liveness: GET /healthz on the container's own PORT (python: the slim image has no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3020'), timeout=4)"]
CMD ["flowpbx", "serve"]
