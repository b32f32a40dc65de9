#!/usr/bin/env bash
# What `make test-compose` needs before compose can start: Debian's docker.io, docker-compose and
# debootstrap; a running dockerd; a local Debian 12 base image (no image registry is reachable
# here, so it is made with debootstrap and `docker import`) holding the packages the image
# needs plus PostgreSQL and Redis for their stand-ins; and ./wheels, so the image builds with
# no network as an air-gapped site's would.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_IMAGE=${BASE_IMAGE:-contained-test/bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

scripts/apt-ensure.sh docker.io docker-compose debootstrap

if ! docker info >/dev/null 2>&1; then
  # A dockerd that ended without cleaning up leaves pid files behind. Once another process
  # has that pid, a new dockerd takes it for its containerd and waits for it in vain.
  for pair in /var/run/docker.pid:dockerd /var/run/docker/containerd/containerd.pid:containerd; do
    file=${pair%%:*} name=${pair##*:}
    if [ -f "$file" ] && [ "$(cat "/proc/$(cat "$file")/comm" 2>/dev/null)" != "$name" ]; then
      echo "Removing $file: no $name has that pid"
      rm -f "$file"
    fi
  done
  echo "Starting dockerd (log: /var/log/contained-dockerd.log)"
  nohup dockerd >/var/log/contained-dockerd.log 2>&1 &
  for _ in $(seq 150); do
    docker info >/dev/null 2>&1 && break
    sleep 0.2
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start" >&2; exit 1; }
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  rootfs=$(mktemp -d /var/tmp/contained-base.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  packages="$(scripts/install-system-deps.sh --print) postgresql redis-server"
  echo "Making base image $BASE_IMAGE with debootstrap (about a minute)"
  debootstrap --variant=minbase --include="${packages// /,}" bookworm "$rootfs" "$MIRROR" \
    >/var/log/contained-debootstrap.log 2>&1 \
    || { tail -20 /var/log/contained-debootstrap.log >&2; exit 1; }
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
fi

# Wheels made by the base image's own Python, whose markers may differ from this machine's
# (Debian's 3.11.2 needs async-timeout, 3.11.7 does not). This machine's CA bundle goes in
# with it, in case PyPI is reached through a proxy that this machine alone trusts.
rm -f wheels/*.whl
docker run --rm --network host -v "$PWD:/src" -e PIP_DISABLE_PIP_VERSION_CHECK=1 \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro "$BASE_IMAGE" \
  sh -c 'python3 -m venv /tmp/venv && /tmp/venv/bin/pip wheel -q -r /src/requirements.txt -w /src/wheels'
