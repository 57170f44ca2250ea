"""Limits before work, for both HTTP servers (the team server and the model server).

A plain ASGI middleware (:class:`Guard`, shaped like Starlette's ``TrustedHostMiddleware``) and a
uvicorn protocol wrapper (:func:`header_deadline_protocol`). Standard library only: the model
server imports this inside every model image.

In order, before the application sees a request:

1. the ``Host`` header must be one of the allowed names (DNS rebinding: a browser page on a
   foreign name must not reach a loopback server);
2. a body announced over the cap is refused with 413 before a byte of it is read;
3. ``authenticate`` (the team server's token check) runs before the body is read, so an
   anonymous caller cannot make the server buffer anything;
4. the body must arrive within ``body_timeout_s`` (a slow-trickling client gets 408 and the
   connection is closed) and stay under the cap while it streams (413);
5. for buffered paths, a JSON body nested deeper than ``max_json_depth`` is refused with 400
   before any parser recurses into it.

Headers themselves get a deadline in the protocol: a connection that has not sent a complete
request head within ``header_timeout_s`` (of connecting, or of its previous response) is closed.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_BINDS: Final = frozenset({"0.0.0.0", "::", ""})

DEFAULT_HEADER_TIMEOUT_S: Final = 10.0
DEFAULT_BODY_TIMEOUT_S: Final = 60.0
DEFAULT_MAX_JSON_DEPTH: Final = 64


class GuardRefusal(Exception):
    """A request refused before the application saw it."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def allowed_hosts_for_bind(bind: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The Host names a server bound to ``bind`` answers: a loopback bind its loopback names,
    a specific address that address, a wildcard bind any name (None) unless ``extra`` names
    some. ``extra`` (``--allowed-host``) is always added; ``*`` in it means any name."""
    names = {normalise_host(h) for h in extra if h.strip()}
    if "*" in names:
        return None
    bind_name = normalise_host(bind)
    if bind_name in WILDCARD_BINDS:
        return frozenset(names) if names else None
    if bind_name in LOOPBACK_HOSTS or _is_loopback_ip(bind_name):
        names |= LOOPBACK_HOSTS | {bind_name}
    else:
        names.add(bind_name)
    return frozenset(names)


def normalise_host(host: str) -> str:
    """``Host`` header value (or a bind address) → bare lower-case name, no port, no brackets."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:  # name:port (an IPv6 literal has several colons)
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_loopback_ip(name: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def json_too_deep(body: bytes, limit: int) -> bool:
    """Whether a JSON text nests arrays/objects deeper than ``limit``, found without parsing
    (no recursion): strings are blanked, then each pass removes the innermost ``[]``/``{}``
    pairs, so ``limit`` passes empty any text at most ``limit`` deep. Malformed texts may count
    as too deep; the parser would refuse them anyway."""
    if b"[" not in body and b"{" not in body:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET).translate(_CURLY_TO_SQUARE)
    for _ in range(limit):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return False  # unbalanced: not a depth problem; the parser will say what it is
        brackets = shorter
    return bool(brackets)


_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")
_CURLY_TO_SQUARE: Final = bytes.maketrans(b"{}", b"[]")


@dataclass(frozen=True)
class BodyPolicy:
    """How one path's request body is received: ``buffered`` (read whole by the guard and JSON
    depth-checked) or streamed to the application. The body timeout applies to the whole body,
    or with ``per_chunk`` to each wait for more bytes (uploads of any size)."""

    max_bytes: int
    buffered: bool = True
    per_chunk: bool = False


def error_json(status: int, message: str) -> bytes:
    return json.dumps({"error": _REASONS.get(status, "Error"), "message": message}).encode()


_REASONS: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    408: "RequestTimeout",
    413: "PayloadTooLarge",
}


class Guard:
    """The ASGI middleware; see the module docstring for what it checks, in which order.

    ``policy(path)`` gives the body policy of a path; ``authenticate(scope)`` (optional) raises
    :class:`GuardRefusal` for a caller who may not send a body; ``render(status, message)``
    makes the error body (each server keeps its own error shape)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: frozenset[str] | None,
        policy: Callable[[str], BodyPolicy],
        body_timeout_s: float | None = DEFAULT_BODY_TIMEOUT_S,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
        authenticate: Callable[[Scope], Awaitable[None]] | None = None,
        render: Callable[[int, str], bytes] = error_json,
    ) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.policy = policy
        self.body_timeout_s = body_timeout_s
        self.max_json_depth = max_json_depth
        self.authenticate = authenticate
        self.render = render
        self._hosts_seen: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            host, length, has_body = _head_facts(scope)
            if self.allowed_hosts is not None and not self._host_ok(host):
                raise GuardRefusal(
                    400, "invalid Host header: this server does not answer that name"
                )
            if not has_body:
                await self.app(scope, receive, send)
                return
            policy = self.policy(scope["path"])
            if length is not None and length > policy.max_bytes:
                raise GuardRefusal(
                    413, f"a body of {length} bytes is over the limit of {policy.max_bytes}"
                )
            if self.authenticate is not None:
                await self.authenticate(scope)
            if policy.buffered:
                body = await self._read_all(receive, policy.max_bytes)
                if _is_json(scope) and json_too_deep(body, self.max_json_depth):
                    raise GuardRefusal(
                        400, f"the JSON body nests deeper than {self.max_json_depth} levels"
                    )
        except GuardRefusal as refusal:
            await self._refuse(send, refusal)
            return
        except _ClientGone:
            return  # nobody to answer (a deadline of the connection, or the client left)
        if policy.buffered:
            await self.app(scope, _replay(body, receive), send)
        elif self.body_timeout_s is None:  # the protocol keeps the deadline, the app the cap
            await self.app(scope, receive, send)
        else:
            await self._stream(scope, receive, send, policy, self.body_timeout_s)

    def _host_ok(self, host: bytes) -> bool:
        """Whether a raw ``Host`` value names this server; answers are remembered (a server
        sees few distinct values), up to a bound so random ones cannot fill memory."""
        known = self._hosts_seen.get(host)
        if known is None:
            assert self.allowed_hosts is not None
            known = normalise_host(host.decode("latin-1")) in self.allowed_hosts
            if len(self._hosts_seen) < 256:
                self._hosts_seen[host] = known
        return known

    async def _read_all(self, receive: Receive, limit: int) -> bytes:
        loop = asyncio.get_running_loop()
        timeout_s = self.body_timeout_s if self.body_timeout_s is not None else math.inf
        deadline = loop.time() + timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise GuardRefusal(408, f"the body did not arrive within {timeout_s:g} s") from None
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise GuardRefusal(413, f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _stream(
        self, scope: Scope, receive: Receive, send: Send, policy: BodyPolicy, timeout_s: float
    ) -> None:
        """Pass the body through, counting bytes and timing the waits; on a breach the app is
        told the client left (it keeps what it has, as for any broken upload) and the guard
        answers instead of it."""
        state: dict[str, Any] = {"size": 0, "refusal": None, "started": False, "done": False}
        limit = policy.max_bytes
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        async def guarded_receive() -> Message:
            if state["refusal"] is not None:
                return {"type": "http.disconnect"}
            if state["done"]:  # the body is in: what comes next is a disconnect, no deadline
                return await receive()
            when = loop.time() + timeout_s if policy.per_chunk else deadline
            try:
                async with asyncio.timeout_at(when):
                    message = await receive()
            except TimeoutError:
                state["refusal"] = GuardRefusal(
                    408, f"the body did not arrive within {timeout_s:g} s"
                )
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                state["done"] = not message.get("more_body", False)
                state["size"] += len(message.get("body", b""))
                if state["size"] > limit:
                    state["refusal"] = GuardRefusal(
                        413, f"the body is over the limit of {limit} bytes"
                    )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["refusal"] is not None and not state["started"]:
                return  # the guard answers
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, guarded_receive, guarded_send)
        if state["refusal"] is not None and not state["started"]:
            await self._refuse(send, state["refusal"])

    async def _refuse(self, send: Send, refusal: GuardRefusal) -> None:
        body = self.render(refusal.status, refusal.message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the rest of an unread body must not be parsed as a request
            *refusal.headers,
        ]
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _ClientGone(Exception):
    pass


def _head_facts(scope: Scope) -> tuple[bytes, int | None, bool]:
    """(Host, Content-Length, whether a body comes) from the headers, in one pass. A bad
    length is a 400."""
    host = b""
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
        elif name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise GuardRefusal(400, "invalid Content-Length") from None
            if length < 0:
                raise GuardRefusal(400, "invalid Content-Length")
        elif name == b"transfer-encoding":
            chunked = True
    return host, length, chunked or bool(length)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # no content type: a JSON route parses it anyway


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that returns the buffered body once, then what the client does next
    (typically ``http.disconnect``)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def header_deadline_protocol(
    head_timeout_s: float, body_timeout_s: float | None = None, http: str = "auto"
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (``http``: auto, h11 or httptools) with deadlines kept by
    the connection itself, at no cost per request beyond a time stamp: a connection is closed
    when no complete request head arrived within ``head_timeout_s`` of connecting or of its
    previous response (uvicorn's keep-alive timer is reset by every byte, so a client trickling
    header bytes would hold it open for ever), and, with ``body_timeout_s``, when a request's
    body is not complete that long after its head (the application then sees a disconnect)."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    base: type[Any] = import_from_string(HTTP_PROTOCOLS.get(http, http))

    class Deadlines(base):  # type: ignore[misc]
        # One lazy timer per connection: moving the deadline only stores a number; the timer
        # re-arms itself when it fires early, so a busy connection schedules almost nothing.
        _timer: asyncio.TimerHandle | None = None
        _deadline = 0.0
        _watching: Any = None  # "head", a request cycle whose body is awaited, or None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._watch("head", head_timeout_s)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch("head", head_timeout_s)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = self.cycle
            if self._watching == "head":
                if cycle is not None and not cycle.response_complete:  # a head is complete
                    if body_timeout_s is not None and cycle.more_body:
                        self._watch(cycle, body_timeout_s)
                    else:
                        self._watching = None
            elif self._watching is not None and not self._watching.more_body:
                self._watching = None  # the body is complete

        def connection_lost(self, exc: Exception | None) -> None:
            self._watching = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def _watch(self, what: Any, seconds: float) -> None:
            self._watching = what
            self._deadline = self.loop.time() + seconds
            if self._timer is None:
                self._timer = self.loop.call_at(self._deadline, self._check)

        def _check(self) -> None:
            self._timer = None
            what = self._watching
            if what is None or self.transport.is_closing():
                return
            if self.loop.time() < self._deadline:
                self._timer = self.loop.call_at(self._deadline, self._check)
                return
            if what == "head":
                expired = self.cycle is None or self.cycle.response_complete
            else:
                expired = what is self.cycle and what.more_body and not what.response_complete
            if expired:
                self.transport.close()

    Deadlines.__name__ = Deadlines.__qualname__ = f"Deadlines{base.__name__}"
    return Deadlines


def __getattr__(name: str) -> Any:
    """``modelyard.httpguard:ServeDeadlinesHTTP``, importable by name for worker processes
    (uvicorn's, gunicorn's), which cannot receive a class made at run time: the model server's
    deadlines from ``MODELYARD_SERVE_HEADER_TIMEOUT_S`` and ``MODELYARD_SERVE_BODY_TIMEOUT_S``
    (the parent's :class:`~modelyard.serving.config.ServeConfig`), 10 s and 30 s if unset."""
    if name == "ServeDeadlinesHTTP":
        import os

        head = float(os.environ.get("MODELYARD_SERVE_HEADER_TIMEOUT_S", DEFAULT_HEADER_TIMEOUT_S))
        body = float(os.environ.get("MODELYARD_SERVE_BODY_TIMEOUT_S", 30.0))
        cls = header_deadline_protocol(head, body)
        globals()[name] = cls
        return cls
    raise AttributeError(name)
