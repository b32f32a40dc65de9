#!/usr/bin/env bash
# What `make test` needs beyond `make run`: the real Redis and PostgreSQL the services tests use.
set -euo pipefail
exec "$(dirname "$0")/apt-ensure.sh" redis-server postgresql
