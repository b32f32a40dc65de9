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


# A fresh interpreter again: what the site made at import is frozen, out of the collector's
# walks, and little else is left for it to walk.
FROZEN_PROBE = """
import gc, sys
from sandboxapp.daphne_on_uvloop import site_loaded
site_loaded()
print(gc.get_freeze_count(), len(gc.get_objects()), "sandboxapp.views" in sys.modules)
"""


def test_the_site_is_imported_then_frozen_before_daphne_serves():
    result = subprocess.run(
        [sys.executable, "-c", FROZEN_PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    frozen, tracked, views_imported = result.stdout.split()
    # The views came in through the URL conf, before the freeze: most of what there is now
    # lies out of the collector's way.
    assert views_imported == "True"
    assert int(frozen) > 10 * int(tracked)
