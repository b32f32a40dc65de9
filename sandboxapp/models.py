from django.conf import settings
from django.db import models


class Learner(models.Model):
    """Someone learning: a guest tied to a browser session, or an account.

    `sandbox_id` is who they are to sandboxd (their sandbox, their files). It is random, never
    derived from a name, and never taken from a request: a learner reaches only their own.
    """

    sandbox_id = models.CharField(max_length=40, unique=True)
    display_name = models.CharField(max_length=40)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.display_name} ({self.sandbox_id})"
