"""Bearer tokens on a model server's prediction routes, verified by the team server.

With ``auth_url`` set (``--auth-url``, ``MODELYARD_SERVE_AUTH_URL``), the routes that run the
model or take labels (:data:`PROTECTED_ACTIONS`: V2 ``infer``, ``/invocations``,
``/v1/feedback``) need ``Authorization: Bearer <token>`` of a team-server token whose role
grants ``predict``. Health and readiness, server and model metadata (the deploy probes read
the served version there; it holds the signature, no data) and ``/metrics`` stay open for
orchestrators and Prometheus.

The model server cannot read the token table (it must not import the store), so it asks the
team server's ``POST /api/v1/auth/check`` with the caller's token as the credential: a stdlib
request in a small thread pool of its own, so a slow team server never holds up the event loop
or the threads that run predict calls. The verdict is cached under the token's SHA-256 — 30 s
for an accepted token (never past its expiry), 5 s for a refused one — which makes the request
path a hash and a dict lookup, and means a revocation takes effect within the TTL. Concurrent
first requests with one token share one check.

Fail closed: when the team server cannot be reached or gives an answer that is not a verdict
(an error, a redirect, a server running without auth), a token that is not already cached as
accepted gets 503 — never an unverified pass. The token is never logged, echoed in an error,
sent anywhere but the configured team server, or followed through a redirect.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import orjson

from modelyard.errors import AuthUnavailable, HTTPError

logger = logging.getLogger("modelyard.serving")

PROTECTED_ACTIONS: Final = frozenset({"infer", "invocations", "feedback"})
CHECK_PATH: Final = "/api/v1/auth/check"

_MAX_TOKEN_BYTES = 1024  # longer is no token of ours; refused without asking
_MAX_ANSWER_BYTES = 64 * 1024
_MAX_PENDING = 256  # distinct tokens being checked at once; more get 503 rather than queue
_CHALLENGE: Final = ((b"www-authenticate", b"Bearer"),)

MISSING = "missing bearer token"
INVALID = "invalid, expired or revoked token"
NO_PREDICT = "this token's role does not grant 'predict'"
UNAVAILABLE = "cannot verify the token: the team server is unavailable; try again shortly"


@dataclass(frozen=True)
class Verdict:
    """The team server's answer about one token: 200 accepted, 401 or 403 refused."""

    status: int
    message: str
    ttl_s: float


class TokenVerifier:
    """Checks a request's bearer token against the team server at ``auth_url``.

    ``ttl_s``/``negative_ttl_s``: how long an accepted/refused verdict is reused; ``clock``
    (monotonic seconds) is injectable so tests can move past a TTL without sleeping.
    """

    def __init__(
        self,
        auth_url: str,
        *,
        ttl_s: float = 30.0,
        negative_ttl_s: float = 5.0,
        timeout_s: float = 2.0,
        retry_after_s: float = 1.0,
        max_entries: int = 10_000,
        threads: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.auth_url = auth_url.rstrip("/")
        self.check_url = self.auth_url + CHECK_PATH
        self.ttl_s = ttl_s
        self.negative_ttl_s = min(negative_ttl_s, ttl_s)
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.max_entries = max_entries
        self.threads = threads
        self.clock = clock
        self._cache: dict[bytes, tuple[float, Verdict]] = {}
        self._pending: dict[bytes, asyncio.Future[Verdict]] = {}
        self._down_until = float("-inf")
        self._down = False
        self._executor: ThreadPoolExecutor | None = None
        self._opener: Any = None

    async def authorize(self, action: str, headers: dict[bytes, bytes]) -> None:
        """Return if the request may run ``action``; raise :class:`HTTPError` 401/403/503."""
        if action not in PROTECTED_ACTIONS:
            return
        scheme, _, raw = headers.get(b"authorization", b"").partition(b" ")
        secret = raw.strip()
        if scheme.lower() != b"bearer" or not secret:
            raise HTTPError(401, MISSING, _CHALLENGE)
        key = hashlib.sha256(secret).digest()
        entry = self._cache.get(key)
        if entry is not None and entry[0] > self.clock():
            verdict = entry[1]
        else:
            verdict = await self._verify(key, secret)
        if verdict.status != 200:
            raise HTTPError(
                verdict.status, verdict.message, _CHALLENGE if verdict.status == 401 else ()
            )

    async def _verify(self, key: bytes, secret: bytes) -> Verdict:
        if len(secret) > _MAX_TOKEN_BYTES or not all(33 <= b < 127 for b in secret):
            return Verdict(401, INVALID, 0.0)  # cannot be a token, and cannot go in a header
        future = self._pending.get(key)
        if future is None:
            if self.clock() < self._down_until or len(self._pending) >= _MAX_PENDING:
                raise _unavailable(self.retry_after_s)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads, "modelyard-auth")
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, self.check, secret.decode("ascii"))
            self._pending[key] = future
            future.add_done_callback(partial(self._settle, key))
        try:
            # Shielded: a client that disconnects must not cancel the check others wait on.
            return await asyncio.shield(future)
        except Exception:  # AuthUnavailable, or anything else: no verdict, no pass
            raise _unavailable(self.retry_after_s) from None

    def _settle(self, key: bytes, future: asyncio.Future[Verdict]) -> None:
        """Cache a verdict, or note the team server is down (once in the log, not per call)."""
        self._pending.pop(key, None)
        if future.cancelled():
            return
        exc = future.exception()  # retrieved here, so an unawaited failure is never reported
        if exc is not None:
            self._down_until = self.clock() + self.retry_after_s
            if not self._down:
                self._down = True
                logger.warning(
                    "cannot verify tokens with the team server at %s: %s; prediction requests "
                    "with a token not verified in the last %.0f s get 503 until it answers",
                    self.auth_url,
                    exc.reason if isinstance(exc, AuthUnavailable) else type(exc).__name__,
                    self.ttl_s,
                )
            return
        if self._down:
            self._down = False
            logger.info("the team server at %s verifies tokens again", self.auth_url)
        verdict = future.result()
        if verdict.ttl_s > 0:
            cache = self._cache
            cache.pop(key, None)
            if len(cache) >= self.max_entries:
                del cache[next(iter(cache))]  # the oldest; it is checked again when next used
            cache[key] = (self.clock() + verdict.ttl_s, verdict)

    def check(self, secret: str) -> Verdict:
        """Ask the team server about ``secret`` (blocking; runs in the verifier's threads)."""
        import urllib.error
        import urllib.request

        from modelyard._version import __version__

        if self._opener is None:
            self._opener = urllib.request.build_opener(_no_redirect_handler())
        request = urllib.request.Request(
            self.check_url,
            data=b"",
            method="POST",
            headers={
                "Authorization": f"Bearer {secret}",
                "Accept": "application/json",
                "User-Agent": f"modelyard-serving/{__version__}",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                body = response.read(_MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 401:
                return Verdict(401, INVALID, self.negative_ttl_s)
            if exc.code == 403:
                return Verdict(403, NO_PREDICT, self.negative_ttl_s)
            raise AuthUnavailable(f"it answered HTTP {exc.code} on {CHECK_PATH}") from None
        except Exception as exc:  # unreachable, timed out, reset, a broken answer: no verdict
            raise AuthUnavailable(_describe(exc)) from None
        return self._accepted(body)

    def _accepted(self, body: bytes) -> Verdict:
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("permissions"), list):
            raise AuthUnavailable(f"its answer on {CHECK_PATH} is not a modelyard token check")
        if answer.get("auth") is not True:
            raise AuthUnavailable("it runs without authentication, so it vouches for no token")
        if "predict" not in answer["permissions"]:
            return Verdict(403, NO_PREDICT, self.negative_ttl_s)
        ttl = self.ttl_s
        expires_in = answer.get("expires_in_s")
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            ttl = max(0.0, min(ttl, float(expires_in)))  # never cached past the token's expiry
        return Verdict(200, "", ttl)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _unavailable(retry_after_s: float) -> HTTPError:
    retry = str(max(1, round(retry_after_s))).encode()
    return HTTPError(503, UNAVAILABLE, ((b"retry-after", retry),))


def _describe(exc: BaseException) -> str:
    import urllib.error

    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    text = str(exc) or type(exc).__name__
    return text[:200]


def _no_redirect_handler() -> Any:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        """urllib would resend the Authorization header to wherever a redirect points."""

        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return NoRedirect()
