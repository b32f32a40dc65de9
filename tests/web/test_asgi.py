"""The ASGI application: HTTP reaches Django; websockets pass the origin check first."""

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator

from sandboxapp.asgi import application
from tests.websockets import closed_with

HOST = (b"host", b"testserver")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_http_is_served_by_django():
    communicator = HttpCommunicator(application, "GET", "/healthz", headers=[HOST])

    response = await communicator.get_response(timeout=10)

    # Django's own report (no sandboxd runs in this test, hence degraded).
    assert response["status"] == 503
    assert b'"channel_layer": {"ok": true' in response["body"]


@pytest.mark.asyncio
async def test_websocket_from_a_foreign_origin_is_refused():
    communicator = WebsocketCommunicator(
        application, "/ws/terminal/", headers=[HOST, (b"origin", b"https://evil.example")]
    )

    connected, _ = await communicator.connect()

    assert connected is False


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_websocket_without_a_learner_is_closed_with_4401():
    communicator = WebsocketCommunicator(
        application, "/ws/terminal/", headers=[HOST, (b"origin", b"http://localhost")]
    )

    connected, _ = await communicator.connect()

    # Accepted, then closed: a page sees the code only on a socket that was accepted.
    assert connected is True and await closed_with(communicator) == 4401
