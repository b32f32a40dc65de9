from django.apps import AppConfig


class SandboxappConfig(AppConfig):
    """The project package is also an app, so its management commands and templates load."""

    name = "sandboxapp"
    verbose_name = "Sandboxes"
