#!/bin/sh
# The peers bench/terminal_peers.py measures against, pinned, installed beside it and never
# into the site's virtualenv: terminado in bench/peers/.venv, wetty in bench/peers/node_modules.
# Needs Python 3.11, Node.js >= 20 with npm, and a C++ compiler (wetty's node-pty builds).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
if [ ! -x "$here/.venv/bin/python" ]; then
    "$python" -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
# Debian 12's own nodejs is 18: wetty 3 needs 20 or newer (NodeSource's packages, say).
if ! command -v npm >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    echo "wetty 3 needs Node.js 20 or newer, with npm; this machine has $(node --version 2>/dev/null || echo none)" >&2
    exit 1
fi
# package-lock.json pins wetty's whole tree; package.json's allowScripts lets npm 11 run
# node-pty's install script (its native part).
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
"$here/node_modules/.bin/wetty" --version >/dev/null
echo "peers installed: terminado $("$here/.venv/bin/python" -c 'import terminado; print(terminado.__version__)'), wetty $(node -p "require('$here/node_modules/wetty/package.json').version")"
