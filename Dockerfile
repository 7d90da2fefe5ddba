# Modelship operator image.
#
# Base: a pinned Python patch release on a pinned Debian release (tag, not digest: digests could not
# be resolved from the machines this was written on; pin the digest in your registry mirror).
# Build (needs a container engine, which the development machines do not have):
#   docker build -t registry.example.com/modelship:0.1.0 .
FROM python:3.11.13-slim-bookworm

# No .pyc files at runtime (the root filesystem is read-only in the chart), unbuffered logs, no pip cache.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# Runtime dependencies only (no dev extras); sources are removed after the install.
RUN pip install --no-cache-dir . \
 && rm -rf /src \
 && groupadd --system --gid 10001 modelship \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin modelship

WORKDIR /
# Numeric UID so that the kubelet can verify runAsNonRoot; matches the chart's runAsUser.
USER 10001:10001
# 8080: /metrics, 8081: kopf liveness (/healthz), as the chart configures them.
EXPOSE 8080 8081
ENTRYPOINT ["modelship", "run"]
