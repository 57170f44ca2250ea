"""The store's contract: one protocol per repository (``modelyard.store.protocols``), kept by
the SQL store and by the client of a team server, and the server's store API derived from it.

``mypy --strict`` holds both implementations to the protocols (the repository attributes are
annotated with them); these tests check what a type checker cannot: that every protocol
method is either served over HTTP or marked local-only, that the routes the server really
mounts are exactly the exposed ones, and that both implementations have each method with the
protocol's own signature."""

from __future__ import annotations

import inspect

import pytest

from modelyard.remote.protocol import LOCAL_ONLY, METHODS, method_specs, unclassified
from modelyard.store.protocols import (
    MetadataStore,
    RunStore,
    protocol_methods,
    repository_protocols,
)
from modelyard.workspace import Workspace

REPOSITORIES = (
    "datasets",
    "runs",
    "lineage",
    "models",
    "pipelines",
    "deployments",
    "monitoring",
    "tokens",
)


def _parameters(fn: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in list(sig.parameters.values())[1:]]


def test_the_store_protocol_names_every_repository() -> None:
    assert tuple(repository_protocols()) == REPOSITORIES
    assert repository_protocols()["runs"] is RunStore
    assert all(protocol_methods(p) for p in repository_protocols().values())


def test_every_protocol_method_is_exposed_or_local_only() -> None:
    """The failure the old hand table hid: a method nobody classified was silently absent."""
    assert unclassified() == []
    assert set(METHODS) == set(REPOSITORIES)
    local_only = {
        f"{r}.{m}" for r, names in METHODS.items() for m, p in names.items() if p == LOCAL_ONLY
    }
    assert local_only == {
        "runs.page",
        "runs.metric_keys",
        "runs.pipelines",
        "tokens.authenticate",
        "tokens.has_active_admin",
    }


def test_an_unclassified_method_stops_the_api_from_being_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new protocol method without a line in METHODS (and a stale line without a method) is
    named, and neither the server's routes nor the client can be built until it is fixed."""
    from modelyard.errors import StoreError

    runs = dict(METHODS["runs"])
    del runs["count"]
    runs["vanished"] = "read"
    monkeypatch.setitem(METHODS, "runs", runs)
    assert unclassified() == ["runs.count", "runs.vanished"]
    with pytest.raises(StoreError, match=r"runs\.count, runs\.vanished"):
        method_specs()


def test_the_server_mounts_exactly_the_exposed_methods(sqlite_workspace: Workspace) -> None:
    from modelyard.server import create_app

    paths = create_app(sqlite_workspace).openapi()["paths"]
    mounted = {p.removeprefix("/api/v1/store/") for p in paths if p.startswith("/api/v1/store/")}
    exposed = {
        f"{repo}/{name}"
        for repo, protocol in repository_protocols().items()
        for name in protocol_methods(protocol)
        if METHODS[repo][name] != LOCAL_ONLY
    }
    assert mounted == exposed
    assert len(exposed) == len(method_specs())
    create = paths["/api/v1/store/runs/create"]["post"]
    assert create["description"].startswith("Requires the `write` permission.")


@pytest.mark.parametrize("repo", REPOSITORIES)
def test_both_stores_have_every_method_with_the_protocol_signature(
    sqlite_workspace: Workspace, repo: str
) -> None:
    from modelyard.remote import RemoteStore

    remote = RemoteStore.connect("http://127.0.0.1:9")  # no request is made
    try:
        protocol = repository_protocols()[repo]
        for store in (sqlite_workspace.store, remote):
            repository = getattr(store, repo)
            for name in protocol_methods(protocol):
                method = getattr(repository, name)
                assert _parameters(getattr(protocol, name)) == [
                    (p.name, p.kind, p.default)
                    for p in inspect.signature(method).parameters.values()
                ], f"{type(repository).__name__}.{name}"
    finally:
        remote.close()


def test_a_local_only_method_through_a_client_says_where_it_runs() -> None:
    from modelyard.errors import ConfigError, ServerSideOnly
    from modelyard.remote import RemoteStore

    remote = RemoteStore.connect("http://127.0.0.1:9")
    try:
        with pytest.raises(ServerSideOnly, match="runs.page is not available through the server"):
            remote.runs.page()
        assert issubclass(ServerSideOnly, ConfigError)
        assert issubclass(ServerSideOnly, AttributeError)
        with pytest.raises(ConfigError, match="direct database access"):
            remote.db  # noqa: B018
    finally:
        remote.close()


def test_the_remote_store_is_no_sql_store() -> None:
    """The issue found ``RemoteStore`` subclassing the SQL ``Store`` and filling its
    repositories with casts; each side now only implements the protocol."""
    from modelyard.remote import RemoteArtifactStore, RemoteStore
    from modelyard.store import Store

    assert not issubclass(RemoteStore, Store)
    assert Store not in RemoteStore.__mro__
    assert MetadataStore not in Store.__mro__  # structural: mypy checks it, not inheritance

    from modelyard.artifacts import ArtifactStore, LocalArtifactStore

    assert not issubclass(RemoteArtifactStore, LocalArtifactStore)
    for cls in (LocalArtifactStore, RemoteArtifactStore):
        assert ArtifactStore in cls.__mro__  # explicit: it inherits put_dir and export_dir
        assert not inspect.isabstract(cls), cls
