"""The metadata store's repositories over HTTP: one ``POST /api/v1/store/{repo}/{method}`` per
exposed method of the store's protocols (:mod:`modelyard.store.protocols`), its JSON body and
response derived from the method's type hints (:mod:`modelyard.remote.protocol`).

Deriving the routes from the protocols keeps the server and :mod:`modelyard.remote` in step
with the store without a hand-written copy of every call; the permission of each method is
still written down, one by one, in ``protocol.METHODS`` (a method missing there stops the
server from starting, and a test names it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse

from modelyard.errors import InvalidParameter, NotFound
from modelyard.remote.protocol import (
    IDENTITY_ARGUMENTS,
    STORE_PREFIX,
    MethodSpec,
    escalation,
    method_specs,
)
from modelyard.server.auth import Principal, require

if TYPE_CHECKING:
    from fastapi import APIRouter


def router() -> APIRouter:
    from fastapi import APIRouter

    api = APIRouter(prefix=STORE_PREFIX, tags=["store"])
    for spec in method_specs():
        api.add_api_route(
            f"/{spec.repo}/{spec.name}",
            _endpoint(spec),
            methods=["POST"],
            name=f"store.{spec.repo}.{spec.name}",
            summary=f"{spec.repo}.{spec.name}",
            description=_first_line(spec),
            response_model=None,
        )
    return api


def _first_line(spec: MethodSpec) -> str:
    first = spec.doc.splitlines()[0] if spec.doc else ""
    return f"Requires the `{spec.permission}` permission. {first}"


def _endpoint(spec: MethodSpec) -> Callable[..., Any]:
    def endpoint(request: Request, body: Any, principal: Principal) -> JSONResponse:
        escalated = escalation(spec.repo, spec.name, body.model_dump(by_alias=True))
        if escalated is not None and not principal.can(escalated):
            from modelyard.server.errors import Forbidden

            raise Forbidden(f"{spec.repo}.{spec.name} with these arguments needs {escalated!r}")
        identity = {
            f"arg_{name}": principal.name
            for name in IDENTITY_ARGUMENTS
            if f"arg_{name}" in type(body).model_fields
            and (name != "trusted_by" or getattr(body, f"arg_{name}") is not None)
        }
        if identity:
            body = body.model_copy(update=identity)
        store = request.app.state.workspace.store
        repository = getattr(store, spec.repo, None)
        if repository is None:
            raise NotFound(f"this server has no {spec.repo} store")
        guard = GUARDS.get((spec.repo, spec.name))
        try:
            if guard is not None:
                body = guard(request, body, principal)
            result = spec.call(repository, body)
        except (ValueError, OverflowError) as exc:
            raise InvalidParameter(f"{spec.repo}.{spec.name}: {_short(exc)}") from None
        except Exception as exc:
            _raise_database_input_error(spec, exc)
            raise
        return JSONResponse({"result": spec.returns.dump_python(result, mode="json")})

    # FastAPI reads the signature: body is the method's argument model, principal the check.
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
            inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=spec.args_model),
            inspect.Parameter(
                "principal",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Principal,
                default=require(spec.permission),
            ),
        ]
    )
    endpoint.__name__ = f"store_{spec.repo}_{spec.name}"
    return endpoint


def _gate_alias_move(request: Request, body: Any, principal: Principal) -> Any:
    """Evaluate the promotion gates here, with the server's config and the model's stored gate:
    a client calling ``move_alias`` directly must not skip what ``promote`` checks. Overriding
    a gate of the server's is an admin act. The history records the checks the server saw fail,
    plus those the client reports it overrode (gates in the client's own config, which only the
    client can see): a client cannot hide a failure of the server's gates, nor lose the record
    of forcing past its own."""
    from modelyard.errors import GateFailed
    from modelyard.models.gates import evaluate

    if body.arg_version is None:  # removing an alias needs no gate, and overrides none
        return body.model_copy(update={"arg_forced": False, "arg_failed_checks": None})
    ws = request.app.state.workspace
    version = ws.store.models.get_version(body.arg_name, body.arg_version)
    failed = evaluate(ws, version, body.arg_alias).failed_texts()
    if failed and not body.arg_forced:
        raise GateFailed(
            f"{version.ref} cannot become {body.arg_alias!r}: {len(failed)} gate check(s) "
            f"failed on the server: {'; '.join(failed)} (an admin token may override with "
            "--force; the override is recorded)",
            failed,
        )
    if failed and not principal.can("admin"):
        from modelyard.server.errors import Forbidden

        raise Forbidden(
            f"overriding the failed gate of {version.ref} -> {body.arg_alias!r} needs 'admin'"
        )
    claimed = list(body.arg_failed_checks or []) if body.arg_forced else []
    overridden = failed + [check for check in claimed if check not in failed]
    return body.model_copy(
        update={"arg_forced": bool(overridden), "arg_failed_checks": overridden or None}
    )


# Checks a method needs beyond its permission, run on the validated body before the call (and
# able to rewrite it, like the identity arguments): what the server must decide itself.
GUARDS: Final[dict[tuple[str, str], Callable[[Request, Any, Principal], Any]]] = {
    ("models", "move_alias"): _gate_alias_move,
}


def _raise_database_input_error(spec: MethodSpec, exc: Exception) -> None:
    """Values the database refuses (too long, out of range, a NUL byte, a broken foreign key)
    are the caller's fault: 422/409, not 500. The driver's text is not echoed back."""
    from sqlalchemy.exc import ArgumentError, CompileError, DataError, IntegrityError

    from modelyard.errors import AlreadyExists

    if isinstance(exc, IntegrityError):
        raise AlreadyExists(f"{spec.repo}.{spec.name}: conflicts with existing records") from None
    if isinstance(exc, ArgumentError | CompileError):  # e.g. an unknown column to update
        raise InvalidParameter(f"{spec.repo}.{spec.name}: an argument is not accepted") from None
    if isinstance(exc, DataError):
        raise InvalidParameter(f"{spec.repo}.{spec.name}: a value does not fit") from None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
