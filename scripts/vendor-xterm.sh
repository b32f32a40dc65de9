#!/usr/bin/env bash
# Refresh the vendored xterm.js and its addons in static/vendor/xterm/ from the npm registry.
#
#   scripts/vendor-xterm.sh            fetch the versions pinned below
#   scripts/vendor-xterm.sh --latest   fetch each package's latest release (then update the pins)
#
# Each tarball is checked against the registry's sha512 integrity before anything is kept.
# Only the browser builds (UMD), the stylesheet and each package's licence are vendored: the
# site then works offline and with no CDN.
set -euo pipefail

PACKAGES=(
  "@xterm/xterm 6.0.0"
  "@xterm/addon-fit 0.11.0"
  "@xterm/addon-web-links 0.12.0"
  "@xterm/addon-search 0.16.0"
  "@xterm/addon-unicode11 0.9.0"
  "@xterm/addon-webgl 0.19.0"
)
# shellcheck source=scripts/npm-fetch.sh
source "$(dirname "$0")/npm-fetch.sh"
DEST="$(cd "$(dirname "$0")/.." && pwd)/static/vendor/xterm"
latest=0
[[ "${1:-}" == "--latest" ]] && latest=1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out"
: > "$work/out/VERSIONS"

for entry in "${PACKAGES[@]}"; do
  read -r name version <<< "$entry"
  short=${name#@xterm/}
  (( latest )) && version=latest
  npm_fetch "$name" "$version" "$work/$short"
  # Without its .map beside it, the sourceMappingURL line would break collectstatic's
  # manifest storage: drop the line rather than vendor megabytes of maps.
  grep -v '^//# sourceMappingURL=' "$work/$short/lib/$short.js" > "$work/out/$short.js"
  cp "$work/$short/LICENSE" "$work/out/LICENSE.$short"
  if [[ -f "$work/$short/css/xterm.css" ]]; then
    cp "$work/$short/css/xterm.css" "$work/out/xterm.css"
  fi
  echo "$name $FETCHED_VERSION $FETCHED_INTEGRITY" >> "$work/out/VERSIONS"
  echo "vendored $name $FETCHED_VERSION"
done

rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$work/out" "$DEST"
echo "into $DEST"
