"""Daphne's reactor runs on uvloop when started through sandboxapp.daphne_on_uvloop."""

import subprocess
import sys

# In a fresh interpreter: Daphne makes its reactor's loop once, when its server is imported.
PROBE = """
from sandboxapp.daphne_on_uvloop import reactor_on_uvloop
loop = reactor_on_uvloop()
from twisted.internet import reactor
print(type(loop).__module__, reactor._asyncioEventloop is loop)
"""


def test_the_reactor_daphne_serves_on_is_a_uvloop_loop():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["uvloop", "True"]
