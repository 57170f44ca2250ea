"""Deny by default: every route declares a permission, and every route refuses a missing,
expired, revoked or under-privileged token."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from _asgi import AppClient
from modelyard.server import create_app, public, require
from modelyard.server.auth import (
    PUBLIC_MOUNTS,
    ROLE_GRANTS,
    check_routes,
    iter_routes,
    route_permission,
)
from modelyard.store.server import hash_token
from modelyard.workspace import Workspace

DIGEST = "sha256:" + "ab" * 32
LACKS = {"read": "predict", "write": "read", "admin": "write", "predict": "read"}


@pytest.fixture
def app_client(sqlite_workspace: Workspace) -> Iterator[tuple[AppClient, Workspace]]:
    with AppClient(create_app(sqlite_workspace)) as client:
        yield client, sqlite_workspace


def _routes(app: object) -> list[tuple[str, str, str]]:
    """(method, concrete path, permission) for every API route."""
    found = []
    for route in iter_routes(app):  # type: ignore[arg-type]
        permission = route_permission(route)
        if permission is None or permission == "public":
            continue
        path = re.sub(r"\{digest\}", DIGEST, route.path)
        for method in sorted(route.methods):
            found.append((method, path, permission))
    return found


def test_every_route_declares_a_permission(sqlite_workspace: Workspace) -> None:
    app = create_app(sqlite_workspace)
    routes = _routes(app)
    assert len(routes) > 70  # the store API, artifacts and uploads are all there
    undeclared = [
        r.path
        for r in iter_routes(app)
        if route_permission(r) is None
        and r.path not in {"/openapi.json", "/docs", "/redoc"}
        and not r.path.startswith("/docs")
        and r.path not in PUBLIC_MOUNTS  # static dashboard files; the data they fetch is not public
    ]
    assert undeclared == []


def test_an_app_with_an_undeclared_route_is_refused(sqlite_workspace: Workspace) -> None:
    from fastapi import APIRouter

    app = create_app(sqlite_workspace)
    extra = APIRouter()

    @extra.get("/leaky")
    def leaky() -> dict[str, str]:
        return {}

    @extra.get("/fine", dependencies=[require("read")])
    def fine() -> dict[str, str]:
        return {}

    @extra.get("/open", dependencies=[public()])
    def open_() -> dict[str, str]:
        return {}

    app.include_router(extra, prefix="/x")
    with pytest.raises(RuntimeError, match=r"\['GET'\] /x/leaky") as info:
        check_routes(app)
    assert "/x/fine" not in str(info.value)
    assert "/x/open" not in str(info.value)


def test_every_route_refuses_bad_tokens(app_client: tuple[AppClient, Workspace]) -> None:
    client, ws = app_client
    tokens = ws.store.tokens
    _, expired = tokens.create("old", "admin", expires_at=datetime.now(UTC) - timedelta(1))
    gone, revoked = tokens.create("gone", "admin")
    tokens.revoke(gone.id)
    by_role = {role: tokens.create(role, role)[1] for role in ROLE_GRANTS}
    routes = _routes(client.app)
    for method, path, permission in routes:
        for label, headers in [
            ("none", {}),
            ("garbage", {"authorization": "Bearer myd_not-a-token"}),
            ("scheme", {"authorization": f"Basic {by_role['admin']}"}),
            ("expired", {"authorization": f"Bearer {expired}"}),
            ("revoked", {"authorization": f"Bearer {revoked}"}),
        ]:
            response = client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (label, method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
        weak = by_role[LACKS[permission]]
        response = client.request(
            method, path, headers={"authorization": f"Bearer {weak}"}, json={}
        )
        assert response.status_code == 403, (method, path, response.text)
        strong = by_role["admin"]
        response = client.request(
            method, path, headers={"authorization": f"Bearer {strong}"}, json={}
        )
        assert response.status_code not in {401, 403}, (method, path, response.text)


def test_health_is_public_and_the_rest_is_not(app_client: tuple[AppClient, Workspace]) -> None:
    client, _ = app_client
    assert client.get("/api/health").json()["auth"] is True
    assert client.post("/api/v1/store/runs/count", json={}).status_code == 401


def test_production_alias_needs_admin(app_client: tuple[AppClient, Workspace]) -> None:
    client, ws = app_client
    writer = ws.store.tokens.create("w", "write")[1]
    body = {"name": "m", "alias": "production", "version": 1, "actor": "x"}
    denied = client.post(
        "/api/v1/store/models/move_alias", json=body, headers={"authorization": f"Bearer {writer}"}
    )
    assert denied.status_code == 403
    assert "admin" in denied.json()["message"]
    body["alias"] = "staging"
    allowed = client.post(
        "/api/v1/store/models/move_alias", json=body, headers={"authorization": f"Bearer {writer}"}
    )
    assert allowed.status_code == 404  # past the permission check; the model does not exist


def test_tokens_are_random_hashed_expiring_and_revocable(workspace: Workspace) -> None:
    tokens = workspace.store.tokens
    token, secret = tokens.create("ci", "write")
    other = tokens.create("ci", "write")[1]
    assert secret != other
    assert secret.startswith("myd_")
    assert len(secret) > 40
    assert tokens.authenticate(secret) == tokens.get(token.id) or tokens.authenticate(secret)
    with workspace.store.db.session() as session:
        from sqlalchemy import text

        stored = [tuple(r) for r in session.execute(text("SELECT * FROM api_tokens"))]
    assert secret not in repr(stored)
    assert hash_token(secret) in repr(stored)
    tokens.revoke(token.id)
    assert tokens.authenticate(secret) is None
    assert tokens.get(token.id).state(datetime.now(UTC)) == "revoked"
    soon = datetime.now(UTC) - timedelta(seconds=1)
    _, stale = tokens.create("stale", "read", expires_at=soon)
    assert tokens.authenticate(stale) is None
    assert tokens.has_active_admin() is False
    tokens.create("boss", "admin")
    assert tokens.has_active_admin() is True


def test_canary_secret_never_leaks(
    app_client: tuple[AppClient, Workspace], caplog: pytest.LogCaptureFixture
) -> None:
    """Plant a canary token, use it wrongly and rightly everywhere, and look for it in
    logs, response bodies, run parameters and the store."""
    client, ws = app_client
    caplog.set_level(logging.DEBUG)
    _, canary = ws.store.tokens.create("canary", "read")
    seen: list[str] = []
    auth = {"authorization": f"Bearer {canary}"}
    for method, path, _permission in _routes(client.app):
        # A read token: the read routes succeed or fail on input, the others are refused.
        for body in ({}, {"run_id": "0" * 32, "name": "x"}, {"id_or_prefix": "zz"}):
            seen.append(client.request(method, path, headers=auth, json=body).text)
        seen.append(client.request(method, path, headers={"authorization": canary}).text)
        seen.append(client.request(method, path, headers={"authorization": canary + "x"}).text)
    seen.append(client.post("/api/v1/store/runs/search", headers=auth, json={"x": 1}).text)
    runs = ws.store.runs.search(limit=1000)
    assert all(canary not in str(r.params) for r in runs)
    assert not any(canary in text for text in seen)
    assert canary not in caplog.text
    assert canary not in repr(ws.settings)


def test_writers_cannot_trust_pickles_swap_images_or_act_as_others(
    app_client: tuple[AppClient, Workspace],
) -> None:
    """Found in review: three ways a write token could reach admin power through the store API."""
    client, ws = app_client
    writer = ws.store.tokens.create("writer-bob", "write")[1]
    auth = {"authorization": f"Bearer {writer}"}
    trusted = client.post(
        "/api/v1/store/models/add_version",
        json={"name": "m", "digest": "sha256:" + "a" * 64, "flavor": "sklearn-pickle",
              "signature": None, "requirements": None, "run_id": None, "source": None,
              "trusted_pickle": True, "trusted_by": "admin-alice"},
        headers=auth,
    )  # fmt: skip
    assert trusted.status_code == 403
    image = client.post(
        "/api/v1/store/models/set_image",
        json={"name": "m", "version": 1, "image_ref": "evil/x:1"},
        headers=auth,
    )
    assert image.status_code == 403
    ws.store.models.add_version(
        "m", digest="sha256:" + "b" * 64, flavor="sklearn", signature=None, requirements={},
        run_id=None, source=None,
    )  # fmt: skip
    approval = client.post(
        "/api/v1/store/models/add_approval",
        json={"name": "m", "version": 1, "actor": "admin-alice"},
        headers=auth,
    )
    assert approval.status_code == 200, approval.text
    assert [a.actor for a in ws.store.models.approvals("m", 1)] == ["writer-bob"]
