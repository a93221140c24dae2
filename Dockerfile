# ml-prod-api container image. See DEPLOYMENT.md.
#
#   docker build -t ml-prod-api .                       # serves tfidf and onnx (no torch)
#   docker build -t ml-prod-api:transformer \
#     --build-arg REQUIREMENTS=requirements-transformer.txt \
#     --build-arg EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu .   # adds CPU torch
#
# PyPI's torch wheel for Linux is the CUDA build (GBs); the CPU build (`2.13.0+cpu`, which
# satisfies the `torch==2.13.0` pin) comes from the PyTorch CPU index given above.

# ---- builder: a virtualenv with the pinned dependencies and the app, nothing else -------------
FROM python:3.11-slim-bookworm AS builder

# requirements-onnx.txt: runtime + onnxruntime/tokenizers; requirements-transformer.txt adds torch.
ARG REQUIREMENTS=requirements-onnx.txt
# An extra package index (the PyTorch CPU index for the torch variant); empty: PyPI only.
ARG EXTRA_INDEX_URL=""

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
# Dependencies first: this layer is reused until a requirements file changes.
COPY requirements.txt requirements-onnx.txt requirements-transformer.txt ./
RUN pip install --no-cache-dir --only-binary=:all: \
        ${EXTRA_INDEX_URL:+--extra-index-url "$EXTRA_INDEX_URL"} -r "$REQUIREMENTS"

# The app itself, as a regular (non-editable) install; its dependencies are already pinned above.
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps . \
    && python -m compileall -q /opt/venv/lib

# Every artifact under models/ (tfidf, onnx, transformer when present), made readable by the app
# whatever its mode in the checkout (a 0600 file would be unreadable by uid 10001). Done here so
# that the runtime image gets the models in one layer with the right modes.
COPY models /build/models
RUN chmod -R a+rX,go-w /build/models

# ---- runtime: the interpreter, the venv, the models; no compilers, no pip cache, no root ------
FROM python:3.11-slim-bookworm AS runtime

# tini as PID 1: it forwards SIGTERM/SIGINT to the server and reaps zombies. Python as PID 1
# would ignore a SIGTERM that arrives before the app installs its handlers (the kernel drops
# signals to PID 1 that have no handler), so an early `docker stop` would wait for SIGKILL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged UID/GID (10001) so that orchestrators can check runAsNonRoot and file
# ownership is predictable. The app's files stay owned by root: the process cannot change them.
# /tmp is stated as 1777 because platforms copy the image's VOLUME directory, permissions
# included, into the volume they mount there (ECS/Fargate bind mounts do).
RUN groupadd --gid 10001 app \
    && useradd --no-log-init --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && chmod 1777 /tmp

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --from=builder /build/models ./models

# Read-only-root friendly: the only writes are under /tmp (prometheus-client's multiprocess
# directory when WEB_CONCURRENCY > 1, Python's tempfile). Mount a tmpfs or emptyDir there.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    HF_HUB_OFFLINE=1 \
    MODELS_DIR=/app/models \
    MODEL_PROVIDER=tfidf \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=1
VOLUME ["/tmp"]

USER 10001:10001
EXPOSE 8000

# Liveness only (the process answers HTTP); readiness is /readyz, probed by the orchestrator.
# No curl in the image: the standard library does it. urlopen raises on a non-2xx answer.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)"]

# `ml-prod-api serve` drains on SIGTERM (DRAIN_GRACE_SECONDS, SHUTDOWN_TIMEOUT_SECONDS) and
# exits 0; WEB_CONCURRENCY > 1 runs several workers with multiprocess metrics.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["ml-prod-api", "serve"]
