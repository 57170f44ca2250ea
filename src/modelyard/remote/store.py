"""A :class:`~modelyard.store.Store` whose repositories live on a team server.

Each repository is a proxy: calling ``store.runs.log_metrics(run_id, points)`` validates the
arguments against the real method's signature, posts them, and rebuilds the returned frozen
dataclasses, so library code cannot tell the difference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from modelyard.errors import ConfigError
from modelyard.remote.client import RemoteClient
from modelyard.store.core import Store

if TYPE_CHECKING:
    from modelyard.remote.protocol import MethodSpec


class RemoteRepository:
    """Stands in for one repository; only the methods the server exposes exist."""

    def __init__(self, client: RemoteClient, repo: str, specs: dict[str, MethodSpec]) -> None:
        self._client = client
        self._repo = repo
        self._specs = specs

    def __getattr__(self, name: str) -> Any:
        spec = self._specs.get(name)
        if spec is None:
            raise AttributeError(f"{self._repo}.{name} is not available through the server")

        def call(*args: Any, **kwargs: Any) -> Any:
            body = self._client.post(spec.path, spec.payload(args, kwargs))
            return spec.result(body["result"])

        call.__name__ = name
        return call

    def __repr__(self) -> str:
        return f"RemoteRepository({self._repo!r}, {self._client.url!r})"


class RemoteStore(Store):
    """The store of a team server. ``db`` does not exist here: code that needs SQL runs on the
    server, not in a client."""

    def __init__(self, client: RemoteClient) -> None:  # no super(): there is no database
        from modelyard.remote.protocol import method_specs

        self.client = client
        self.url = client.url
        by_repo: dict[str, dict[str, MethodSpec]] = {}
        for spec in method_specs():
            by_repo.setdefault(spec.repo, {})[spec.name] = spec
        for repo, specs in by_repo.items():
            setattr(self, repo, cast(Any, RemoteRepository(client, repo, specs)))

    @classmethod
    def connect(cls, url: str, token: str | None = None) -> RemoteStore:
        """A store talking to ``url``; no request is made until the first call."""
        return cls(RemoteClient(url, token))

    def __getattr__(self, name: str) -> Any:
        if name == "db":
            raise ConfigError(
                "this workspace talks to a modelyard server (MODELYARD_URL); direct database "
                "access is only available on the server"
            )
        raise AttributeError(name)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"
