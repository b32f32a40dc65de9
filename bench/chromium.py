"""Debian's Chromium as the browser tests and benches start it."""

CHROMIUM = "/usr/bin/chromium"
# As root, on a machine with no network: no sandbox of Chromium's own (we are in a VM),
# and none of the background connections that would only be refused.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
