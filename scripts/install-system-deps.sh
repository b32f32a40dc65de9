#!/usr/bin/env bash
# What `make run` and the container image need from Debian: the tools the sandboxes use (ip from
# iproute2; unshare, nsenter and mount from util-linux; mkfs.ext4 for learners' layers;
# libseccomp for the seccomp filter; ps; ping, capsh and the kernel headers, which the lessons
# use), and Python 3.11 with venv unless this machine's python3 already has it (the python
# images do). Every dependency from PyPI has a wheel for Python 3.11, so no compiler is needed.
# `--print` lists them all instead, for making a base image ahead (docs/operations.md).
set -euo pipefail
packages=(iproute2 util-linux mount e2fsprogs libseccomp2 procps iputils-ping libcap2-bin
  linux-libc-dev)
if [ "${1:-}" = --print ]; then
  echo "${packages[*]} python3 python3-venv"
  exit 0
fi
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3 python3-venv)
exec "$(dirname "$0")/apt-ensure.sh" "${packages[@]}"
