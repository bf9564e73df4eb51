# Sentinel's central service. docker-compose.yml runs `sentinel migrate` then `sentinel serve`.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first (pinned in pyproject.toml), so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p sentinel agents/sentinel_agent && touch sentinel/__init__.py agents/sentinel_agent/__init__.py \
    && pip install '.[server,fast]' && pip uninstall -y sentinel-gpu

COPY alembic.ini ./
COPY sentinel ./sentinel
COPY agents ./agents
# The alembic chain ships inside the package (sentinel/migrations/), so a plain install works.
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app sentinel \
    && mkdir -p /data && chown sentinel /data
USER sentinel

# NUMBA_CACHE_DIR: the flight-recorder fast path compiles once, then loads from here.
ENV SENTINEL_DATA_DIR=/data SENTINEL_SERVER__HOST=0.0.0.0 SENTINEL_SERVER__PORT=8600 \
    NUMBA_CACHE_DIR=/data/numba-cache
EXPOSE 8600
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8600/healthz', timeout=2)"
CMD ["sh", "-c", "sentinel migrate && exec sentinel serve"]
