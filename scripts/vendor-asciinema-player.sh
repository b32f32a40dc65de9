#!/usr/bin/env bash
# Refresh the vendored asciinema player (replays recorded terminal sessions) in
# static/vendor/asciinema-player/ from the npm registry.
#
#   scripts/vendor-asciinema-player.sh            fetch the version pinned below
#   scripts/vendor-asciinema-player.sh --latest   fetch the latest release (then update the pin)
#
# Only the browser bundle, its stylesheet and the licence are vendored: no CDN.
set -euo pipefail

NAME=asciinema-player
VERSION=3.18.0
# shellcheck source=scripts/npm-fetch.sh
source "$(dirname "$0")/npm-fetch.sh"
DEST="$(cd "$(dirname "$0")/.." && pwd)/static/vendor/asciinema-player"
[[ "${1:-}" == "--latest" ]] && VERSION=latest

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out"
npm_fetch "$NAME" "$VERSION" "$work/pkg"
grep -v '^//# sourceMappingURL=' "$work/pkg/dist/bundle/asciinema-player.min.js" \
  > "$work/out/asciinema-player.min.js"
cp "$work/pkg/dist/bundle/asciinema-player.css" "$work/pkg/LICENSE" "$work/out/"
echo "$NAME $FETCHED_VERSION $FETCHED_INTEGRITY" > "$work/out/VERSIONS"

rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$work/out" "$DEST"
echo "vendored $NAME $FETCHED_VERSION into $DEST"
