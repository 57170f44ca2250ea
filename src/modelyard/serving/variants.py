"""Live traffic for a candidate version: shadow mirroring and the local canary split, done by
the serving version's own server.

A progressive rollout (:mod:`modelyard.monitor.progressive`) runs a candidate server beside the
one that serves, and writes a small JSON *split file* that every worker of the serving version
re-reads when it changes (checked at most every :data:`POLL_S` seconds, one ``stat`` per check)::

    {"mode": "shadow", "percent": 20, "candidates": ["http://127.0.0.1:40123"]}
    {"mode": "canary", "percent": 5, "candidates": ["http://…"], "sticky": "x-user-id"}

**shadow**: ``percent`` of the predictions this server answered with 200 are sent again, after
the answer went out, to a candidate (same body, same ``x-request-id``, and
``x-modelyard-variant: shadow`` so the candidate logs them as such). Its answer is read and
dropped: it never reaches a client, and a candidate that fails, hangs or is gone costs the
client nothing (mirrors run in the background, at most :data:`MAX_MIRRORS` at a time and
:data:`MAX_MIRROR_BYTES` of bodies per worker; beyond that a mirror is skipped and counted).

**canary** (the ``local`` target; Docker weights its proxy instead): ``percent`` of the
prediction requests are answered by a candidate, relayed as they come. With ``sticky`` the
choice is a hash of that request header, so one client keeps one variant; without it (or when
the header is absent) each request is drawn at random. A candidate that cannot be reached or
answers 5xx does not fail the client: this server answers the request itself (counted as a
``fallback``); the analysis counts the candidate's failure all the same.

Outcomes are counted in ``modelyard_variant_requests_total{variant, outcome}`` (``ok``,
``error``: the candidate answered 5xx, ``unreachable``: no answer, ``dropped``: not mirrored
because too many were in flight).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

logger = logging.getLogger("modelyard.serving.variants")

SHADOW = "shadow"
CANARY = "canary"
PRIMARY = "primary"
#: Header a mirrored request carries; the candidate logs the request under this variant.
VARIANT_HEADER = b"x-modelyard-variant"
POLL_S = 0.5
MAX_MIRRORS = 64
#: The most request bytes held by mirrors in flight per worker (64 bodies of the 8 MiB limit to
#: a hanging shadow would hold 512 MiB).
MAX_MIRROR_BYTES = 32 * 1024 * 1024
TIMEOUT_S = 10.0
_PREDICT_SUFFIXES = ("/infer",)
_FORWARDED = (b"content-type", b"authorization", b"inference-header-content-length", b"accept")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Count = Callable[[str, str], None]  # (variant, outcome)


@dataclass(frozen=True)
class Split:
    """One split file's content, checked."""

    mode: str
    percent: float
    candidates: tuple[tuple[str, int], ...]
    sticky: bytes | None = None

    def chooses(self, headers: dict[bytes, bytes]) -> bool:
        """Whether this request goes to (canary) or is copied to (shadow) a candidate."""
        if self.percent <= 0:
            return False
        if self.percent >= 100:
            return True
        key = headers.get(self.sticky) if self.sticky else None
        if key:
            return zlib.crc32(key) % 10_000 < self.percent * 100
        return random.random() * 100 < self.percent


def parse_split(raw: Any) -> Split | None:
    """The split a file holds; None for an empty or ``{"mode": "off"}`` one. Raises ValueError
    on anything else than the documented shape."""
    if not raw or raw.get("mode") in (None, "off"):
        return None
    mode = raw.get("mode")
    if mode not in (SHADOW, CANARY):
        raise ValueError(f"mode must be shadow, canary or off, not {mode!r}")
    percent = raw.get("percent")
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
        raise ValueError(f"percent must be a number from 0 to 100, not {percent!r}")
    urls = raw.get("candidates")
    if not isinstance(urls, list) or not urls:
        raise ValueError("candidates must be a non-empty list of http://HOST:PORT")
    candidates = []
    for url in urls:
        parts = urlsplit(url) if isinstance(url, str) else None
        if (
            parts is None
            or parts.scheme != "http"
            or not parts.hostname
            or parts.path not in ("", "/")
        ):
            raise ValueError(f"a candidate must be http://HOST:PORT, not {url!r}")
        candidates.append((parts.hostname, parts.port or 80))
    sticky = raw.get("sticky")
    if sticky is not None and (not isinstance(sticky, str) or not sticky.isascii() or not sticky):
        raise ValueError(f"sticky must be a header name, not {sticky!r}")
    return Split(
        mode, float(percent), tuple(candidates), sticky.lower().encode() if sticky else None
    )


class SplitFile:
    """The split file, re-read when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._checked = 0.0
        self._stamp: tuple[int, int, int] | None = None
        self.split: Split | None = None

    def current(self) -> Split | None:
        now = time.monotonic()
        if now - self._checked < POLL_S:
            return self.split
        self._checked = now
        try:
            st = os.stat(self.path)
        except OSError:
            self._stamp, self.split = None, None
            return None
        # The inode too: each write replaces the file, and two writes of one size within one
        # clock tick (25 -> 50 %) share a modification time.
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.split = parse_split(orjson.loads(self.path.read_bytes()))
            except (OSError, ValueError, AttributeError) as exc:
                logger.warning("ignoring the split file %s: %s", self.path, exc)
                self.split = None
        return self.split


class _Upstream:
    """A tiny keep-alive HTTP/1.1 client to one candidate (the model server always answers
    with a Content-Length)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(
        self, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        head = [b"POST " + path + b" HTTP/1.1", b"host: " + f"{self.host}:{self.port}".encode()]
        head += [k + b": " + v for k, v in headers]
        head.append(b"content-length: " + str(len(body)).encode())
        payload = b"\r\n".join(head) + b"\r\n\r\n" + body
        for attempt in (0, 1):
            reused = bool(self._idle) and attempt == 0
            if reused:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(payload)
                await writer.drain()
                answer = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                writer.close()
                if reused:  # the server closed an idle connection: one retry on a new one
                    continue
                raise
            except BaseException:  # cancelled by the caller's timeout: no socket left open
                writer.close()
                raise
            status, out_headers, out_body, keep = answer
            if keep and len(self._idle) < 16:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return status, out_headers, out_body
        raise OSError("no connection to the candidate")


async def _read_response(
    reader: asyncio.StreamReader,
) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ValueError("the candidate's answer has an overlong head") from None
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
    status = int(parts[1])
    headers = []
    length = 0
    keep = True
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        key, value = key.strip().lower(), value.strip()
        headers.append((key, value))
        if key == b"content-length":
            length = int(value)
        elif key == b"connection" and value.lower() == b"close":
            keep = False
    body = await reader.readexactly(length) if length else b""
    return status, headers, body, keep


class VariantRouter:
    """ASGI middleware of the serving version: mirrors (shadow) or splits (canary) prediction
    requests to the candidates a :class:`SplitFile` names (see the module docstring)."""

    def __init__(self, app: ASGIApp, split_file: Path, max_body: int, count: Count) -> None:
        self.app = app
        self.file = SplitFile(split_file)
        self.max_body = max_body
        self.count = count
        self._upstreams: dict[tuple[str, int], _Upstream] = {}
        self._mirrors: set[asyncio.Task[None]] = set()
        self._mirror_bytes = 0
        self._turn = 0

    def _upstream(self, split: Split) -> _Upstream:
        self._turn = (self._turn + 1) % len(split.candidates)
        where = split.candidates[self._turn]
        upstream = self._upstreams.get(where)
        if upstream is None:
            upstream = self._upstreams[where] = _Upstream(*where)
        return upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        split = self.file.current()
        path: str = scope["path"]
        if (
            split is None
            or scope["method"] != "POST"
            or not (path == "/invocations" or path.endswith(_PREDICT_SUFFIXES))
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if not split.chooses(headers):
            await self.app(scope, receive, send)
            return
        body, complete = await _read_all(receive, self.max_body)
        replay = _replay(body, receive, complete)
        if not complete:  # over the limit: the server refuses it, nothing is copied
            await self.app(scope, replay, send)
            return
        forwarded = [(k, headers[k]) for k in _FORWARDED if k in headers]
        target = scope["raw_path"] if scope.get("raw_path") else path.encode()
        if split.mode == CANARY:
            await self._canary(split, scope, target, forwarded, body, replay, send)
            return
        seen: dict[str, Any] = {}

        async def watching(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["id"] = dict(message.get("headers") or []).get(b"x-request-id")
            await send(message)

        await self.app(scope, replay, watching)
        if seen.get("status") == 200 and seen.get("id"):
            self._mirror(split, target, [*forwarded, (b"x-request-id", seen["id"])], body)

    async def _canary(
        self,
        split: Split,
        scope: Scope,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        replay: Receive,
        send: Send,
    ) -> None:
        if b"x-request-id" in dict(scope["headers"]):
            headers.append((b"x-request-id", dict(scope["headers"])[b"x-request-id"]))
        try:
            status, out_headers, out_body = await asyncio.wait_for(
                self._upstream(split).request(target, headers, body), TIMEOUT_S
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            logger.warning("canary unreachable (%s); answering here", exc)
            self.count(CANARY, "unreachable")
            await self.app(scope, replay, send)
            return
        if status >= 500:
            self.count(CANARY, "error")
            await self.app(scope, replay, send)  # the client gets this version's answer
            return
        self.count(CANARY, "ok")
        kept = [(k, v) for k, v in out_headers if k not in (b"connection", b"keep-alive")]
        await send({"type": "http.response.start", "status": status, "headers": kept})
        await send({"type": "http.response.body", "body": out_body})

    def _mirror(
        self, split: Split, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        size = len(body)
        if len(self._mirrors) >= MAX_MIRRORS or self._mirror_bytes + size > MAX_MIRROR_BYTES:
            self.count(SHADOW, "dropped")
            return
        upstream = self._upstream(split)
        task = asyncio.get_running_loop().create_task(
            self._send_mirror(upstream, target, [*headers, (VARIANT_HEADER, b"shadow")], body)
        )
        self._mirrors.add(task)
        self._mirror_bytes += size

        def done(task: asyncio.Task[None]) -> None:
            self._mirrors.discard(task)
            self._mirror_bytes -= size

        task.add_done_callback(done)

    async def _send_mirror(
        self, upstream: _Upstream, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        try:
            status, _, _ = await asyncio.wait_for(
                upstream.request(target, headers, body), TIMEOUT_S
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            self.count(SHADOW, "unreachable")
            return
        except Exception:  # never let a mirror's failure surface anywhere
            logger.exception("mirroring to the shadow failed")
            self.count(SHADOW, "unreachable")
            return
        self.count(SHADOW, "error" if status >= 500 else "ok")


async def _read_all(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body, unless it is over ``limit`` (then what was read, and False)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive, complete: bool) -> Receive:
    """A ``receive`` giving ``body`` first, then whatever the original still has."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


def variant_of(headers: dict[bytes, bytes], own: str) -> str:
    """The variant a request is logged under: a candidate logs mirrored requests as
    ``shadow``, the others as its own variant (``canary``); the serving version ignores the
    header (a client cannot relabel its requests there)."""
    if own != PRIMARY and headers.get(VARIANT_HEADER) == b"shadow":
        return SHADOW
    return own
