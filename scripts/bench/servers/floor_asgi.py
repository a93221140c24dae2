"""The floor: a bare ASGI app (no framework) that parses the JSON body and answers a fixed
prediction. Whatever this reaches is the ceiling of uvicorn + JSON on this machine."""

from __future__ import annotations

from typing import Any

import orjson

ANSWER = orjson.dumps(
    {"prediction": {"label": "non-toxic", "probability_toxic": 0.1, "model_version": "fixed",
                    "provider": "none"}}
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": ANSWER})
        return
    orjson.loads(body)["text"]
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
