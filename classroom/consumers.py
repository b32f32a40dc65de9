"""The instructor's dashboard socket: cell updates pushed as learners progress."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from classroom.access import classroom_for_instructor
from classroom.events import dashboard_group

CLOSE_FORBIDDEN = 4403


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        pk = int(self.scope["url_route"]["kwargs"]["pk"])
        try:
            await database_sync_to_async(classroom_for_instructor)(self.scope["user"], pk)
        except Http404:
            # Not theirs, or no such classroom: the same answer, so neither is revealed.
            await self.close(code=CLOSE_FORBIDDEN)
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
