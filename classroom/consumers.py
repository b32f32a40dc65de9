"""The instructor's sockets: the dashboard's cell updates, and watching a learner's terminal."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from classroom.access import classroom_for_instructor
from classroom.events import dashboard_group, learners_group
from classroom.models import Classroom, Member
from sandboxapp.consumers import Target, TerminalConsumer, close_refused
from sandboxapp.learners import learner_of

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_IN_CLASS = 4404


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        pk = int(self.scope["url_route"]["kwargs"]["pk"])
        try:
            await database_sync_to_async(classroom_for_instructor)(self.scope["user"], pk)
        except Http404:
            # Not theirs, or no such classroom: the same answer, so neither is revealed.
            await close_refused(self, CLOSE_FORBIDDEN)
            return
        self.group = dashboard_group(pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: object, **kwargs: object) -> None:
        pass  # the dashboard only listens

    async def progress_cell(self, event: dict) -> None:
        await self.send_json({"event": "cell", **{k: event[k] for k in ("member", "step", "cell")}})

    async def member_joined(self, event: dict) -> None:
        await self.send_json({"event": "joined", "member": event["member"]})


def _watch_target(user, pk: int, member_id: int, node: str | None) -> Target | None:
    try:
        classroom = classroom_for_instructor(user, pk)
    except Http404:
        return None
    member = classroom.members.select_related("learner").filter(pk=member_id).first()
    if member is None:
        return None
    sandbox_id = member.learner.sandbox_id
    # sandboxd checks the node's name; a viewer never starts anything, so a wrong one fails.
    return Target(sandbox_id, rate_key=f"watch:{user.pk}:{sandbox_id}", role="viewer", node=node)


class WatchConsumer(TerminalConsumer):
    """An instructor watching a member's terminal. It attaches as a viewer, so sandboxd
    itself discards every key and resize it relays (and says so with a read_only event)."""

    no_target_close = CLOSE_FORBIDDEN

    async def target(self, query: dict[str, str]) -> Target | None:
        kwargs = self.scope["url_route"]["kwargs"]
        return await database_sync_to_async(_watch_target)(
            self.scope["user"], int(kwargs["pk"]), int(kwargs["member"]), query.get("node") or None
        )


def _running_classes_of(session, user) -> list[int]:
    learner = learner_of(session, user)
    if learner is None:
        return []
    members = Member.objects.filter(learner=learner).exclude(classroom__state=Classroom.State.ENDED)
    return list(members.values_list("classroom_id", flat=True))


class ClassEventsConsumer(AsyncJsonWebsocketConsumer):
    """A learner's page hears their classes: the instructor's messages, pause and end."""

    groups_joined: list[str]

    async def connect(self) -> None:
        classes = await database_sync_to_async(_running_classes_of)(
            self.scope["session"], self.scope.get("user")
        )
        if not classes:
            await close_refused(self, CLOSE_NOT_IN_CLASS)
            return
        self.groups_joined = [learners_group(pk) for pk in classes]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: object, **kwargs: object) -> None:
        pass  # learners only listen here

    async def class_message(self, event: dict) -> None:
        await self.send_json({"event": "message", "message": event["message"]})

    async def class_state(self, event: dict) -> None:
        await self.send_json({"event": "state", "state": event["state"]})
