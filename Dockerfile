# One image, two services: `web` (Daphne, unprivileged) and `sandboxd` (root, privileged).
#
# BASE_IMAGE is any Debian 12 image with Python 3.11: the default, or one made in-house (the
# compose test makes one with debootstrap). Builds with no network when the base image already
# has the Debian packages below and ./wheels holds a wheel for every requirement
# (`pip wheel -r requirements.txt -w wheels`): see docs/operations.md, "Air-gapped installs".
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/contained/venv/bin:$PATH \
    CONTAINED_DATA_DIR=/data \
    CONTAINED_STATIC_ROOT=/app/staticfiles \
    CONTAINED_STATE_DIR=/var/lib/contained \
    SANDBOXD_SOCKET=/run/contained/sandboxd.sock

# The tools the sandboxes use, the same list `make run` installs; apt runs only for missing ones.
COPY scripts/apt-ensure.sh scripts/install-system-deps.sh /tmp/install/
RUN /tmp/install/install-system-deps.sh && rm -rf /tmp/install /var/lib/apt/lists/*

# From ./wheels alone when it holds wheels (air-gapped), from PyPI otherwise.
COPY requirements.txt /app/requirements.txt
COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/contained/venv \
    && if ls /tmp/wheels/*.whl >/dev/null 2>&1; then \
         pip install --no-cache-dir --no-index --find-links /tmp/wheels -r /app/requirements.txt; \
       else \
         pip install --no-cache-dir -r /app/requirements.txt; \
       fi \
    && rm -rf /tmp/wheels

# The web tier's own user; sandboxd lets it (and root) connect by this uid and group.
RUN groupadd --gid 10001 contained \
    && useradd --no-log-init --uid 10001 --gid contained --home-dir /data --no-create-home contained \
    && install -d -o contained -g contained /data

WORKDIR /app
# What the site runs, named: the wheels, tests and docs stay out of the image.
COPY manage.py pyproject.toml /app/
COPY sandboxapp /app/sandboxapp
COPY lessons /app/lessons
COPY classroom /app/classroom
COPY templates /app/templates
COPY static /app/static
COPY bench /app/bench
COPY deploy /app/deploy
RUN SECRET_KEY=collectstatic-only CONTAINED_DATA_DIR=/tmp/build \
    python manage.py collectstatic --noinput -v 0 && rm -rf /tmp/build

ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]
CMD ["web"]
