#!/usr/bin/env bash
# What `make run` needs from Debian: Python with venv, and the tools the sandboxes use
# (ip from iproute2; unshare, nsenter and mount from util-linux; mkfs.ext4 for learners' layers;
# libseccomp for the seccomp filter; ps; ping, capsh and the kernel headers, which the
# lessons use). Every dependency from PyPI has a wheel for Python 3.11, so no compiler is
# needed.
set -euo pipefail
exec "$(dirname "$0")/apt-ensure.sh" python3 python3-venv iproute2 util-linux mount \
  e2fsprogs libseccomp2 procps iputils-ping libcap2-bin linux-libc-dev
