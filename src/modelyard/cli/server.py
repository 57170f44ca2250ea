"""``modelyard server`` and ``modelyard tokens``: run the team server, manage its API tokens."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

from modelyard.cli._common import console, err_console, pass_workspace
from modelyard.errors import InvalidParameter
from modelyard.workspace import Workspace

_DURATION = re.compile(r"^(\d+)([hdw])\Z")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=5500, show_default=True, type=click.IntRange(0, 65535))
@click.option("--no-auth", is_flag=True, help="Accept requests without a token (loopback only).")
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Accept requests without a token on ANY interface. Anyone who can reach it is admin.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests for this Host name (repeatable; '*' for any). By default only "
    "the bind's own names are answered (loopback: 127.0.0.1, localhost, ::1).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="Largest JSON request body (default 32 MiB).",
)
@click.option(
    "--max-upload-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="Largest artifact upload (default 64 GiB).",
)
@pass_workspace
def server(
    ws: Workspace,
    host: str,
    port: int,
    no_auth: bool,
    insecure_no_auth: bool,
    allowed_hosts: tuple[str, ...],
    max_body_bytes: int | None,
    max_upload_bytes: int | None,
) -> None:
    """Serve this workspace to a team: REST API (/openapi.json) and dashboard (/ui/).

    Clients use it with MODELYARD_URL=http://HOST:PORT and MODELYARD_TOKEN=<token>. The first
    start prints a one-time admin token; create more with 'modelyard tokens create'.
    """
    import os

    import uvicorn

    from modelyard.httpguard import allowed_hosts_for_bind, header_deadline_protocol
    from modelyard.server import AuthConfig, ServerLimits, create_app
    from modelyard.server.launch import bootstrap_admin, check_bind, collect_stale_uploads
    from modelyard.server.limits import extra_hosts

    section = ws.settings.section("server")
    limits = ServerLimits.read(
        section, os.environ, max_body_bytes=max_body_bytes, max_upload_bytes=max_upload_bytes
    )
    extra = [*extra_hosts(section, os.environ), *allowed_hosts]
    limits = limits.with_hosts(allowed_hosts_for_bind(host, extra))

    authenticate = check_bind(host, no_auth=no_auth, insecure_no_auth=insecure_no_auth)
    if authenticate:
        first = bootstrap_admin(ws)
        if first.token is not None:
            # Printed to the terminal once, never logged: the store keeps only its hash.
            err_console().print(
                "No admin token existed, so one was created. It is shown only this once:\n"
                f"  {first.token}\n"
                "Keep it secret; revoke it with 'modelyard tokens revoke' once you have others.",
                highlight=False,
                soft_wrap=True,
            )
    elif not no_auth or insecure_no_auth:
        err_console().print(f"WARNING: serving {host}:{port} WITHOUT authentication")
    app = create_app(ws, auth=AuthConfig() if authenticate else None, limits=limits)
    collect_stale_uploads(ws)
    console().print(f"modelyard server for {ws.root} on http://{host}:{port}")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        http=header_deadline_protocol(limits.header_timeout_s),
    )


@click.group()
def tokens() -> None:
    """API tokens of the team server (stored hashed; the secret is shown only at creation).

    On the server's own workspace, or from anywhere with MODELYARD_URL and an admin
    MODELYARD_TOKEN set.
    """


@tokens.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["read", "write", "admin", "predict"]),
    default="read",
    show_default=True,
)
@click.option("--expires-in", help="Lifetime like 12h, 30d or 8w (default: never expires).")
@pass_workspace
def create(ws: Workspace, name: str, role: str, expires_in: str | None) -> None:
    """Create a token called NAME and print its secret once."""
    expires_at = None
    if expires_in:
        expires_at = datetime.now(UTC) + _duration(expires_in)
    token, secret = ws.store.tokens.create(name, role, expires_at=expires_at, created_by="cli")
    until = token.expires_at.strftime("%Y-%m-%d %H:%M UTC") if token.expires_at else "never"
    err_console().print(f"Created {role} token {token.id} ({name}), expires {until}.")
    err_console().print("The secret is shown only now:")
    click.echo(secret)


@tokens.command("list")
@pass_workspace
def list_(ws: Workspace) -> None:
    """Tokens with their role and state (never their secrets)."""
    from rich.table import Table

    now = datetime.now(UTC)
    table = Table("NAME", "ROLE", "STATE", "EXPIRES", "LAST USED")
    table.add_column("ID", no_wrap=True)
    for t in ws.store.tokens.list():
        table.add_row(
            t.name,
            t.role,
            t.state(now),
            t.expires_at.strftime("%Y-%m-%d %H:%M") if t.expires_at else "-",
            t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "-",
            t.id,
        )
    console().print(table)


@tokens.command("revoke")
@click.argument("token_id")
@pass_workspace
def revoke(ws: Workspace, token_id: str) -> None:
    """Revoke the token with TOKEN_ID; requests using it are refused from now on."""
    token = ws.store.tokens.revoke(token_id)
    console().print(f"Revoked token {token.id} ({token.name}).")


def _duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise InvalidParameter(f"--expires-in {text!r}: use a number and h, d or w (e.g. 30d)")
    amount, unit = int(match.group(1)), match.group(2)
    if amount == 0 or amount > 100_000:
        raise InvalidParameter(f"--expires-in {text!r}: out of range")
    return timedelta(hours=amount) * {"h": 1, "d": 24, "w": 24 * 7}[unit]
