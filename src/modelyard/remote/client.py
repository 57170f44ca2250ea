"""One HTTP connection to a team server, turning its JSON errors back into modelyard errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard import errors

if TYPE_CHECKING:
    import httpx

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT_S = 60.0

# Errors that carry more than a message are rebuilt by hand; the rest by class name.
_SIMPLE: dict[str, type[errors.ModelyardError]] = {
    name: cls
    for name in errors.__all__
    if isinstance(cls := getattr(errors, name), type)
    and issubclass(cls, errors.ModelyardError)
    and name not in {"CorruptArtifact", "GateFailed", "InvalidInput", "ImageBuildFailed"}
}


class RemoteClient:
    """An httpx client bound to a server URL and a bearer token. ``transport`` lets tests put
    an in-process app (or a fault injector) underneath without a socket."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"user-agent": "modelyard-remote"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            base_url=self.url + API_PREFIX,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    def __repr__(self) -> str:  # never the token
        return f"RemoteClient({self.url!r})"

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> Any:
        """``timeout`` (seconds to wait for the answer) for a request the server needs long
        for, like verifying a large direct upload."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        response = self._send("POST", path, json=body, **extra)
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=params).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise errors.StoreUnavailable(
                f"cannot reach the modelyard server at {self.url}: {type(exc).__name__}"
            ) from None
        raise_for_error(response)
        return response


def raise_for_error(response: httpx.Response) -> None:
    """Raise the modelyard error a failed response describes."""
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    name = str(body.get("error", ""))
    message = str(body.get("message") or f"server answered HTTP {response.status_code}")
    if response.status_code == 401:
        raise errors.Unauthorized(
            f"the server refused the token: {message} (set MODELYARD_TOKEN to a valid token)"
        )
    if response.status_code == 403:
        raise errors.Forbidden(message)
    if name == "GateFailed":
        raise errors.GateFailed(message, list(body.get("failed_checks") or []))
    if name == "InvalidRequest":
        details = body.get("details") or []
        where = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in details
        )
        raise errors.UsageError(f"the server rejected the request: {where or message}")
    cls = _SIMPLE.get(name)
    if cls is not None and name not in {"ModelyardError"}:
        raise cls(message)
    if response.status_code >= 500:
        raise errors.StoreError(f"the modelyard server failed: {message}")
    raise errors.ModelyardError(message)
