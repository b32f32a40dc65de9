"""The terminal websocket's frames and close codes (docs/terminal-protocol.md).

Plain constants with no Django, so a client outside the site (the load bench, the compose
smoke test) speaks exactly what the consumer does.
"""

import struct

# Browser -> server opcodes (first byte of a binary frame).
OP_INPUT = 0
OP_RESIZE = 1
OP_ACK = 2
# Server -> browser: the one binary frame, output at an absolute offset.
OP_OUTPUT = 0
OFFSET = struct.Struct(">Q")
SIZE = struct.Struct(">HH")

# Close codes (4000-4999 are the application's own).
CLOSE_NO_LEARNER = 4401
CLOSE_RATE_LIMITED = 4429
CLOSE_BAD_FRAME = 4400
CLOSE_REFUSED = 4409
CLOSE_UNAVAILABLE = 4503
CLOSE_ENDED = 4000
