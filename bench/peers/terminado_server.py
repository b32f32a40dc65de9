"""terminado served as Jupyter serves it: one new terminal per websocket, at /websocket.

    python terminado_server.py PORT COMMAND [ARG...]

Run by bench/terminal_peers.py with bench/peers/.venv's Python.
"""

import asyncio
import sys

import tornado.web
from terminado import TermSocket, UniqueTermManager


async def main(port: int, command: list[str]) -> None:
    manager = UniqueTermManager(shell_command=command, max_terminals=10_000)
    app = tornado.web.Application([(r"/websocket", TermSocket, {"term_manager": manager})])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
