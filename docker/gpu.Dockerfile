# syntax=docker/dockerfile:1.7
# resrl-agent/gpu: a Ray node for the learner and vLLM inference engines: CUDA base, resrl-agent[train,vllm].
# Python comes from uv (a standalone CPython build, pinned to the same patch release as the python:3.11.14 images),
# Ray from constraints.txt, so this node joins a cluster of resrl-agent/ray-worker nodes. torch is the one vLLM pins.
#   docker build -f docker/gpu.Dockerfile -t resrl-agent/gpu:0.1.0 .
#   docker run --rm --gpus all --shm-size=8g resrl-agent/gpu:0.1.0 ray start --address=HEAD:6379 --block

FROM ghcr.io/astral-sh/uv:0.13.8 AS uv

# jericho and fast-downward-textworld (ALFWorld's engine) ship as sources: build their wheels where gcc is
FROM python:3.11.14-bookworm AS sdists
COPY docker/constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir cmake==3.31.6 \
    && pip wheel --no-cache-dir --no-deps -c /tmp/constraints.txt -w /wheels jericho fast-downward-textworld

FROM nvidia/cuda:12.8.1-base-ubuntu24.04 AS build
COPY --from=uv /uv /usr/local/bin/uv
COPY --from=sdists /wheels /wheels
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN uv python install 3.11.14 && uv venv --python 3.11.14 /opt/venv
WORKDIR /src
COPY docker/constraints.txt /tmp/constraints.txt
COPY pyproject.toml README.md ./
COPY resrl_agent ./resrl_agent
COPY envs ./envs
COPY tools ./tools
COPY servers ./servers
# the CPU-only torch pin is dropped: vLLM brings the CUDA torch it was built against
ARG VLLM_VERSION=0.33.0
RUN grep -v -E '^(torch|triton|nvidia-)' /tmp/constraints.txt > /tmp/constraints-gpu.txt \
    && uv pip install --python /opt/venv/bin/python --find-links /wheels -c /tmp/constraints-gpu.txt ".[train,vllm]" "vllm==${VLLM_VERSION}"

FROM nvidia/cuda:12.8.1-base-ubuntu24.04
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="resrl-agent/gpu" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.description="resrl-agent Ray node for the learner and vLLM engines (CUDA)"
RUN groupadd --system --gid 10001 resrl \
    && useradd --system --uid 10001 --gid resrl --create-home --home-dir /home/resrl --shell /bin/bash resrl
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
COPY --chown=resrl:resrl configs /home/resrl/app/configs
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RESRL_CACHE=/home/resrl/.cache/resrl-agent \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_ADDRESS=127.0.0.1:6379 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /home/resrl/app
EXPOSE 6379 8265 10001
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "ray health-check --address \"$RAY_ADDRESS\""]
CMD ["ray", "start", "--address=127.0.0.1:6379", "--block"]
