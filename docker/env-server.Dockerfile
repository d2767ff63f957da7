# syntax=docker/dockerfile:1.7
# resrl-agent/env-server: every registered environment served over HTTP/WebSocket (`resrl-agent serve env`).
# Core install only (no torch, no Ray). ALFWorld games are generated at build time by the real engine.
#   docker build -f docker/env-server.Dockerfile -t resrl-agent/env-server:0.1.0 .
#   docker run --rm -p 127.0.0.1:8000:8000 resrl-agent/env-server:0.1.0 --envs resrl/ALFWorld-v0

# The full image has gcc, g++ and make: jericho and fast-downward-textworld (ALFWorld's engine) ship as sources.
FROM python:3.11.14-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY docker/constraints.txt /tmp/constraints.txt
# fast-downward's build calls cmake; 3.x, since its CMakeLists predates cmake 4's minimum-version rule
RUN pip install --no-cache-dir cmake==3.31.6
COPY pyproject.toml README.md ./
COPY resrl_agent ./resrl_agent
COPY envs ./envs
COPY tools ./tools
COPY servers ./servers
RUN pip install --no-cache-dir -c /tmp/constraints.txt . \
    && pip uninstall --yes cmake \
    && python -c "import sys, servers, envs; assert 'torch' not in sys.modules"
# The games: `resrl-agent alfworld generate --out DIR --n N --seed S` (the same seed gives the same games).
ARG ALFWORLD_GAMES=200
ARG ALFWORLD_SEED=0
RUN resrl-agent alfworld generate --out /opt/alfworld-games --n "${ALFWORLD_GAMES}" --seed "${ALFWORLD_SEED}"

FROM python:3.11.14-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="resrl-agent/env-server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.description="resrl-agent env server: text envs over HTTP/WebSocket, no torch"
RUN groupadd --system --gid 10001 resrl \
    && useradd --system --uid 10001 --gid resrl --create-home --home-dir /home/resrl --shell /usr/sbin/nologin resrl
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/alfworld-games /opt/alfworld-games
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RESRL_CACHE=/home/resrl/.cache/resrl-agent \
    RESRL_ENV_PORT=8000
# Where the bearer token's secret is mounted (a path, not the token: hadolint's DL3064 matches the name only).
# hadolint ignore=DL3064
ENV RESRL_ENV_SERVER_TOKEN_FILE=/run/secrets/resrl-env-token
USER 10001:10001
WORKDIR /home/resrl
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; p = os.environ.get('RESRL_ENV_PORT', '8000'); sys.exit(u.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=2).status != 200)"]
# The bearer token comes from a secret mounted at $RESRL_ENV_SERVER_TOKEN_FILE (compose: secrets; Kubernetes: a
# Secret volume); without it the server refuses to listen on 0.0.0.0 (docs/serving.md "Security").
ENTRYPOINT ["resrl-agent", "serve", "env"]
CMD ["--host", "0.0.0.0", "--port", "8000"]
