#!/usr/bin/env bash
# What `make test` needs beyond `make run`: the real Redis and PostgreSQL the services tests use,
# bubblewrap (a peer the runtime benchmark measures against), nginx (in front of two workers in
# the several-workers test) and Debian's Chromium, which the browser tests drive through
# Playwright.
set -euo pipefail
exec "$(dirname "$0")/apt-ensure.sh" redis-server postgresql bubblewrap chromium nginx-light
