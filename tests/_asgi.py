"""A synchronous client for an ASGI app, with lifespan, on one event loop (test helper)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx


class AppClient:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        )

    def __enter__(self) -> AppClient:
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def start() -> None:
            self._task = asyncio.ensure_future(
                self.app({"type": "lifespan"}, self._to_app.get, self._from_app.put)
            )
            await self._to_app.put({"type": "lifespan.startup"})
            message = await self._from_app.get()
            assert message["type"] == "lifespan.startup.complete", message

        self.loop.run_until_complete(start())
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self._to_app.put({"type": "lifespan.shutdown"})
            assert (await self._from_app.get())["type"] == "lifespan.shutdown.complete"
            await self._task
            await self._client.aclose()

        self.loop.run_until_complete(stop())
        self.loop.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        content = kwargs.get("content")
        if content is not None and not isinstance(content, bytes | str):
            chunks = list(content)

            async def agen() -> AsyncIterator[bytes]:
                for chunk in chunks:
                    yield chunk

            kwargs["content"] = agen()
        return self.loop.run_until_complete(self._client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def gather_post(self, path: str, bodies: Iterable[Any]) -> list[httpx.Response]:
        async def run() -> list[httpx.Response]:
            return list(await asyncio.gather(*(self._client.post(path, json=b) for b in bodies)))

        return self.loop.run_until_complete(run())
