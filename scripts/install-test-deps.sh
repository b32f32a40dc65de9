#!/usr/bin/env bash
# What `make test` needs beyond `make run`: the real Redis and PostgreSQL the services tests use,
# and bubblewrap, a peer the runtime benchmark measures against.
set -euo pipefail
exec "$(dirname "$0")/apt-ensure.sh" redis-server postgresql bubblewrap
