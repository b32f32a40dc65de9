from django.conf import settings
from django.db import models
from django.utils import timezone


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
    # Within the hour (learners.learner_of): guests not seen for long are pruned (guests_prune).
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.display_name} ({self.sandbox_id})"
