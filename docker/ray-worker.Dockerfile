# syntax=docker/dockerfile:1.7
# resrl-agent/ray-worker: a Ray node for CPU rollouts (and the Ray head): resrl-agent[train] with CPU-only torch.
# Every node of one Ray cluster must run the same Ray and Python versions: this image, or resrl-agent/gpu, which pins
# both identically (tests/docker checks it).
#   docker build -f docker/ray-worker.Dockerfile -t resrl-agent/ray-worker:0.1.0 .

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
# torch comes from the CPU wheel index (the PyPI wheel carries the CUDA libraries: gigabytes a CPU node never uses);
# constraints.txt pins it (torch==X+cpu), with ray, transformers and everything else.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        -c /tmp/constraints.txt ".[train]" \
    && pip uninstall --yes cmake \
    && python -c "import torch, ray; assert not torch.cuda.is_available()"

FROM python:3.11.14-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="resrl-agent/ray-worker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.description="resrl-agent Ray node for CPU rollouts (torch CPU, Ray)"
RUN groupadd --system --gid 10001 resrl \
    && useradd --system --uid 10001 --gid resrl --create-home --home-dir /home/resrl --shell /bin/bash resrl
COPY --from=build /opt/venv /opt/venv
COPY --chown=resrl:resrl configs /home/resrl/app/configs
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RESRL_CACHE=/home/resrl/.cache/resrl-agent \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_ADDRESS=127.0.0.1:6379 \
    HF_HUB_OFFLINE=1
USER 10001:10001
WORKDIR /home/resrl/app
# 6379 GCS, 8265 dashboard and job API, 10001 Ray client
EXPOSE 6379 8265 10001
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "ray health-check --address \"$RAY_ADDRESS\""]
CMD ["ray", "start", "--head", "--port=6379", "--dashboard-host=0.0.0.0", "--block"]
