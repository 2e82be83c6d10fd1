# syntax=docker/dockerfile:1
# The LizaAlert photo tagger on TorchServe 0.12, CPU only.
#
#   docker build -t lizaalert-tagger:MODEL_VERSION .
#   docker run -d --name tagger --restart unless-stopped \
#       -p 127.0.0.1:8080:8080 -p 127.0.0.1:8081:8081 -p 127.0.0.1:8082:8082 lizaalert-tagger:MODEL_VERSION
#
# (docs/deploy.md: tokens, Kubernetes.) Not the official pytorch/torchserve image:
# it ships Python 3.9 and torch 2.4, and the project pins Python 3.11 and
# torch 2.14.1 (requirements.txt). Stages:
#   deps     Python 3.11 venv in /opt/venv with the runtime packages
#   builder  deps + the rest of requirements.txt + the project's package; builds
#            model_store/lizaalert_tagger.mar from the weights shipped in
#            models/default/ (lizaalert-default-model, as `make model` does; no
#            training) and the image's two TorchServe configs from the one
#            config.properties (lizaalert_tagger.ops.deploy_config)
#   runtime  slim Python 3.11 + Java 17 JRE + the venv + the package + the
#            archive, non-root
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
# torch and torchvision are the CPU builds from PyTorch's CPU index: the PyPI
# wheels for Linux are the CUDA builds and pull several GB of nvidia-*
# libraries that a CPU server never loads. "+cpu" is the CPU build's local
# version label and exists only on that index, so these two cannot silently
# come from PyPI; everything else resolves from PyPI as usual (one resolve,
# one consistent set). The version numbers are requirements.txt's:
# tests/unit/deploy/test_dockerfile.py checks every pin here against it, and --constraint
# makes pip refuse a drift at build time too ("2.14.1+cpu" satisfies "==2.14.1").
# Only what the server runs is installed: requirements.txt also holds the
# test, training and client tools (pytest, hypothesis, scikit-learn, ...).
# requests/urllib3 are the client's (the health check is a TaggerClient);
# setuptools builds the project's package in the runtime stage without a download.
RUN pip install --constraint /tmp/requirements.txt \
        --extra-index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1+cpu torchvision==0.29.1+cpu \
        torchserve==0.12.0 pyyaml==6.0.4 pillow==13.0.0 numpy==2.4.6 psutil==7.2.2 \
        requests==2.34.2 urllib3==2.8.0 setuptools==84.2.1

FROM deps AS builder
# The builder is not shipped, so it gets the project's whole environment
# (requirements.txt: torch-model-archiver, safetensors, ...). The CPU torch
# installed above already satisfies requirements.txt's torch pins, so pip keeps it.
RUN pip install --constraint /tmp/requirements.txt --requirement /tmp/requirements.txt
WORKDIR /src
# The project's files are found here, not next to the installed package.
ENV LIZAALERT_HOME=/src
# What the archive step reads: the package, the handler, the shipped weights.
COPY pyproject.toml README.md metrics.yaml ./
COPY src/ src/
COPY handler/ handler/
COPY models/ models/
RUN pip install --constraint /tmp/requirements.txt --no-deps --no-build-isolation . \
 && lizaalert-default-model
# The image's TorchServe configs, generated from the project's one config.properties:
# config.properties for `docker run` (tokens on), pod.properties behind nginx (docs/deploy.md).
COPY config.properties ./
RUN python -m lizaalert_tagger.ops.deploy_config --profile container --source config.properties --out /src/image/config.properties \
 && python -m lizaalert_tagger.ops.deploy_config --profile pod --source config.properties --out /src/image/pod.properties

FROM ${PYTHON_IMAGE} AS runtime
# Java 17 for TorchServe's frontend; tini as PID 1 (below). Debian package
# versions are not pinned (hadolint DL3008 is ignored for this line): Debian
# drops a JRE version from the archive as soon as its security update lands,
# so a pin breaks the build within weeks. The base image tag fixes the Debian
# release (bookworm: JRE 17, tini 0.19); within it we take the current
# security-patched build.
# /usr/share/man/man1 is missing in slim images and the JRE's postinst needs it.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 tagger \
 && useradd --uid 10001 --gid 10001 --home-dir /home/tagger --create-home --shell /usr/sbin/nologin tagger \
 && install -d -o 10001 -g 10001 -m 0700 /home/tagger/run /home/tagger/tmp

COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The project's package in the venv (the health check is its TaggerClient); its
# dependencies are the venv's already. Built here from the sources rather than
# copied from the builder, whose venv also holds the training tools.
COPY requirements.txt /tmp/requirements.txt
COPY pyproject.toml README.md /tmp/project/
COPY src/ /tmp/project/src/
RUN pip install --constraint /tmp/requirements.txt --no-deps --no-build-isolation /tmp/project \
 && rm -rf /tmp/project /tmp/requirements.txt

# TorchServe writes key_file.json (the tokens) to its working directory; its
# launcher keeps a pid file in $TEMP, and the JVM uses $TEMP for the workers'
# sockets and the unpacked archive. Both are the user's own directories, so the
# rest of the file system can be read-only (Kubernetes: readOnlyRootFilesystem
# with an emptyDir on each). Logs go to stdout only (deploy/docker/log4j2.xml).
ENV PYTHONUNBUFFERED=1 \
    HOME=/home/tagger \
    TEMP=/home/tagger/tmp \
    TMPDIR=/home/tagger/tmp

# Everything under /opt/tagger belongs to root and is read-only to the server.
COPY --from=builder /src/model_store/lizaalert_tagger.mar /opt/tagger/model_store/lizaalert_tagger.mar
COPY --from=builder /src/image/config.properties /src/image/pod.properties /opt/tagger/
COPY deploy/docker/log4j2.xml deploy/docker/healthcheck.py /opt/tagger/
COPY metrics.yaml /opt/tagger/metrics.yaml

# Numeric, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 10001:10001
WORKDIR /home/tagger/run

# 8080 inference, 8081 management (both need a token), 8082 Prometheus metrics (no token).
EXPOSE 8080 8081 8082

# Tokens are on, and TorchServe 0.12 wants one even on /ping, so the check is
# the project's TaggerClient with the server's own key_file.json inside the
# container (it never leaves it): /ping, then a READY worker of the model
# (TaggerClient.model_ready): a container is healthy when the model answers,
# not merely when Java listens. The client renews a token that expired (a
# day). Probing /metrics would need no token but cannot tell a model with no
# worker from a working one. start-period covers JVM start + model load + warm-up.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "/opt/tagger/healthcheck.py"]

# tini is PID 1 and torchserve --foreground its only child (exec form, no
# shell). Not torchserve itself as PID 1: its launcher installs no SIGTERM
# handler, and the kernel drops unhandled signals to a namespace's PID 1, so
# `docker stop` / a pod deletion would always wait for the SIGKILL (measured:
# SigCgt 0, SIGTERM ignored). With tini, SIGTERM goes to the launcher's whole
# process group (-g: launcher, JVM, workers) and the container stops at once.
# Unlike the official image's `tail -f /dev/null`, nothing keeps the container
# alive: if the JVM dies, the launcher returns and the container exits. (The
# launcher exits 0 even then, so use a restart policy that does not look at the
# code: `--restart unless-stopped`; Kubernetes restarts it anyway.)
# Kubernetes and KServe run the same command with --ts-config /opt/tagger/pod.properties.
ENTRYPOINT ["tini", "-g", "--"]
CMD ["torchserve", "--foreground", "--ncs", "--ts-config", "/opt/tagger/config.properties", \
     "--log-config", "/opt/tagger/log4j2.xml"]
