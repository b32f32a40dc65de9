"""The namespace runtime: builds, inspects and tears down learners' sandboxes.

Plain Python on top of Linux system calls; it never imports Django. The web tier reaches it
through sandboxd; management commands use it directly.
"""
