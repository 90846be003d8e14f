# syntax=docker/dockerfile:1
# image-hub-bot: `docker build -t image-hub-bot .`, then see docs/OPERATIONS.md (or docker-compose.yml).

# ---- builder: install the project and its dependencies into a virtualenv at /opt/venv ----
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the package build needs (pyproject's packages: bot, cogs; README is the long description).
COPY pyproject.toml setup.py README.md ./
COPY bot ./bot
COPY cogs ./cogs
# The same install as CI and scripts/run-bot (pip install of the project from pyproject), minus the dev extra.
# The smoke test runs isolated (-I) so it imports the installed copy, not ./bot: with its message
# catalogs, compiled by the build (setup.py), loaded.
RUN /opt/venv/bin/python -m pip install . \
    && /opt/venv/bin/python -I -c "import bot.health, bot.db.migrate, cogs.i18n as i; [i.catalog(l) for l in i.LANGUAGES]"

# ---- runtime: the virtualenv only; no compilers, no pip, no source tree ----
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    METRICS_PORT=9108
RUN groupadd --system --gid 10001 bot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin bot \
    && mkdir -p /app/data \
    && chown -R 10001:10001 /app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
# SQLite lives here by default (DATABASE_URL=sqlite+aiosqlite:///./data/image-hub-bot.db, relative to /app).
VOLUME ["/app/data"]
# Prometheus /metrics and /healthz (METRICS_PORT).
EXPOSE 9108
# Probes http://127.0.0.1:${METRICS_PORT:-9108}/healthz (the default URL of `bot.health --check`).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot.health", "--check"]
ENTRYPOINT ["python", "-m", "bot"]
