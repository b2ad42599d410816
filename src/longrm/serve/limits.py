"""The request-body size limit, enforced while the body streams in (chunked bodies included)."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from longrm.serve.errors import error_body


def too_large_message(size: str, limit: int) -> str:
    """Return the 413 message for a body of `size` bytes over `limit`."""
    return (
        f"the request body is {size} bytes and this server accepts at most {limit} "
        "(--max-body-bytes): send fewer or shorter texts per request"
    )


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, by its Content-Length or as it arrives.

    Past the limit `receive` raises an HTTPException(413), which FastAPI passes on to the
    error handlers; a body whose size was declared is refused before it is read at all.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_413(send, too_large_message(declared.decode(), self.max_bytes))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, too_large_message(f"over {received}", self.max_bytes))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPException as err:  # raised outside FastAPI's handlers (a streaming route)
            if err.status_code != 413 or started:
                raise
            await _send_413(send, str(err.detail))


async def _send_413(send: Send, message: str) -> None:
    body = json.dumps(error_body(413, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
