"""Guests nobody has seen for long go, with their files and id block; everyone else stays."""

from __future__ import annotations

import io
import secrets
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from classroom.models import Classroom, Member
from sandboxapp.learners import SEEN_EVERY, learner_of
from sandboxapp.models import Learner
from sandboxapp.runtime import volumes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


def learner_seen(days_ago: float, user=None) -> Learner:
    prefix = "u" if user else "g"
    learner = Learner.objects.create(
        sandbox_id=f"{prefix}{secrets.token_hex(6)}", display_name="Ada", user=user
    )
    Learner.objects.filter(pk=learner.pk).update(
        last_seen_at=timezone.now() - timedelta(days=days_ago)
    )
    learner.refresh_from_db()
    return learner


def with_files(daemon, learner: Learner) -> None:
    """A file in the learner's own layer, their sandbox then stopped, as an idle one is."""
    daemon.call("ensure", learner=learner.sandbox_id)
    daemon.call("exec", learner=learner.sandbox_id, argv=["sh", "-c", "echo mine > /root/notes"])
    daemon.call("reset", learner=learner.sandbox_id)


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune_guests", *args, stdout=out)
    return out.getvalue()


@pytest.mark.root
def test_a_guest_not_seen_for_long_goes_with_their_files_and_no_one_else(
    sandboxd, config, django_user_model
):
    gone = learner_seen(40)
    recent = learner_seen(3)
    account = learner_seen(40, user=django_user_model.objects.create_user("grace"))
    in_class = learner_seen(40)
    teacher = django_user_model.objects.create_user("teacher")
    classroom = Classroom.objects.create(
        instructor=teacher, name="Containers", ends_at=timezone.now() - timedelta(days=35)
    )
    Member.objects.create(classroom=classroom, learner=in_class, display_name="Ada", name_key="ada")
    for learner in (gone, recent, account, in_class):
        with_files(sandboxd, learner)
    told = prune()

    assert set(Learner.objects.all()) == {recent, account, in_class}
    assert volumes.volumes_of(config.state_dir, gone.sandbox_id) == []
    for kept in (recent, account, in_class):
        assert volumes.volumes_of(config.state_dir, kept.sandbox_id) == [kept.sandbox_id]
    assert f"pruned 1 guests not seen for 30 days\n  {gone.sandbox_id}\n" in told
    assert "kept 1 such guests who are in a classroom" in told


@pytest.mark.root
def test_a_dry_run_names_them_and_deletes_nothing(sandboxd, config):
    stale = learner_seen(40)
    with_files(sandboxd, stale)
    assert stale.sandbox_id in prune("--dry-run")
    assert Learner.objects.filter(pk=stale.pk).exists()
    assert volumes.volumes_of(config.state_dir, stale.sandbox_id) == [stale.sandbox_id]


def test_without_sandboxd_no_guest_loses_their_row_alone(settings, tmp_path):
    # Their files could not be deleted: the row stays, to be pruned on a later run.
    settings.SANDBOXD_SOCKET = tmp_path / "nobody-here.sock"
    stale = learner_seen(40)
    with pytest.raises(CommandError, match=f"could not delete the files of {stale.sandbox_id}"):
        prune()
    assert Learner.objects.filter(pk=stale.pk).exists()


def test_a_retention_shorter_than_a_session_is_refused():
    with pytest.raises(CommandError, match="shorter than a guest's session"):
        prune("--days", "3")


def test_a_learner_is_seen_at_most_once_an_hour(client):
    client.post("/start/", {"display_name": "Ada"})
    learner = Learner.objects.get()
    hour_ago = timezone.now() - SEEN_EVERY - timedelta(minutes=1)
    Learner.objects.filter(pk=learner.pk).update(last_seen_at=hour_ago)
    client.get("/terminal/")
    seen = Learner.objects.get().last_seen_at
    assert seen > hour_ago + SEEN_EVERY
    client.get("/terminal/")  # within the hour: no write
    assert Learner.objects.get().last_seen_at == seen
    assert learner_of(client.session, None) == learner


@pytest.mark.root
def test_a_pruned_guest_takes_their_recorded_sessions_with_them(start_sandboxd, settings, tmp_path):
    # Kept while their class was (a class that records); the class deleted, they go too.
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    daemon = start_sandboxd(recordings_dir=recordings)
    settings.SANDBOXD_SOCKET = daemon.config.socket_path
    stale, recent = learner_seen(40), learner_seen(3)
    for learner in (stale, recent):
        (recordings / f"{learner.sandbox_id}-20261001T090000.cast").write_text("{}\n")
    prune()
    assert [p.name for p in recordings.iterdir()] == [f"{recent.sandbox_id}-20261001T090000.cast"]
