"""What the team server and :mod:`modelyard.remote` agree on: which repository methods are
exposed over HTTP, the permission each needs, and their argument and result types.

The methods are those of the store's protocols (:mod:`modelyard.store.protocols`). Each one
has a line in :data:`METHODS`: a permission (exposed) or :data:`LOCAL_ONLY` (it stays next to
the database); :func:`method_specs` refuses to run while a protocol method has neither, and
``tests/test_store_protocols.py`` names it. Both sides derive the JSON from the protocol
methods' own type hints (pydantic), so a
``Run`` or ``ModelVersion`` leaves the server and arrives in the client as the same frozen
dataclass, with datetimes and tuples intact. Kept free of FastAPI so a client needs only httpx.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from modelyard import validation
from modelyard.errors import StoreError

Permission = Literal["read", "write", "admin", "predict"]
LocalOnly = Literal["local-only"]
LOCAL_ONLY: Final[LocalOnly] = "local-only"

STORE_PREFIX = "/store"

# repository attribute of MetadataStore -> method -> permission. Reads are "read"; changes
# "write"; what moves production, trusts pickles, sets promotion gates or deploys is "admin".
# LOCAL_ONLY: not exposed (the dashboard's own queries, and what must never leave the server).
METHODS: Final[dict[str, dict[str, Permission | LocalOnly]]] = {
    "datasets": {
        "add_version": "write",
        "all": "read",
        "get": "read",
        "get_version": "read",
        "get_version_by_id": "read",
        "versions": "read",
    },
    "runs": {
        "add_artifact": "write",
        "artifact_names": "read",
        "artifacts": "read",
        "count": "read",
        "count_metrics": "read",
        "create": "write",
        "finish": "write",
        "get": "read",
        "heartbeat": "write",
        "log_metrics": "write",
        "log_params": "write",
        "metric_counts": "read",
        "metric_history": "read",
        "metric_keys": LOCAL_ONLY,  # the dashboard's queries run on the server (ui_api)
        "page": LOCAL_ONLY,
        "pipelines": LOCAL_ONLY,
        "resolve_id": "read",
        "search": "read",
        "set_tags": "write",
    },
    "lineage": {
        "add": "write",
        "edges_from": "read",
        "edges_to": "read",
        "edges_touching": "read",
    },
    "models": {
        "add_approval": "write",
        "add_version": "write",
        "alias_history": "read",
        "all": "read",
        "approvals": "read",
        "get": "read",
        "get_version": "read",
        "get_version_by_id": "read",
        # "admin" for the production alias (see escalation) and to override a failed gate,
        # which the server evaluates itself (server/store_api.py GUARDS)
        "move_alias": "write",
        "remove_tags": "write",
        "set_description": "write",
        "set_gate": "admin",
        "set_image": "admin",  # an image ref is what deploys and rollbacks run
        "set_status": "write",
        "set_tags": "write",
        "set_trusted": "admin",
        "versions": "read",
        "versions_of_run": "read",
    },
    "pipelines": {
        "cache_get": "read",
        "cache_put": "write",
        "create_run": "write",
        "finish_run": "write",
        "get": "read",
        "list": "read",
        "resolve_id": "read",
        "update_step": "write",
    },
    "deployments": {
        "add_event": "admin",
        "add_revision": "admin",
        "all": "read",
        "create": "admin",
        "events": "read",
        "find": "read",
        "finish_revision": "admin",
        "get": "read",
        "update": "admin",
    },
    "monitoring": {
        "acquire_lease": "write",
        "actions": "read",
        "add_action": "write",
        "add_report": "write",
        "finish_action": "write",
        "get_report": "read",
        "leases": "read",
        "release_lease": "write",
        "renew_lease": "write",
        "reports": "read",
        "set_fired": "write",
    },
    # Managing tokens is managing who may do anything: admin only. ``authenticate`` and
    # ``has_active_admin`` stay server-side, and no exposed method returns a hash; the secret
    # leaves the server once, in the answer to ``create``.
    "tokens": {
        "authenticate": LOCAL_ONLY,
        "create": "admin",
        "get": "admin",
        "has_active_admin": LOCAL_ONLY,
        "list": "admin",
        "revoke": "admin",
    },
}

PROTECTED_ALIASES: Final = validation.PROTECTED_ALIASES


def escalation(repo: str, method: str, args: Mapping[str, Any]) -> Permission | None:
    """A stronger permission some calls need depending on their arguments."""
    if (
        repo == "models"
        and method == "move_alias"
        and validation.is_protected_alias(args.get("alias"))
    ):
        return "admin"
    if repo == "models" and method == "add_version" and args.get("trusted_pickle"):
        return "admin"  # trusting a pickle means running its code: as strong as set_trusted
    return None


# Arguments that say who did something. The server fills them from the authenticated caller,
# whatever the client sent: a writer must not record an approval or an alias move as someone else.
IDENTITY_ARGUMENTS: Final = frozenset({"actor", "trusted_by", "created_by"})


class MethodSpec:
    """What the server and the client both need to know about one exposed method."""

    def __init__(
        self, repo: str, name: str, func: Callable[..., Any], permission: Permission
    ) -> None:
        from pydantic import Field, TypeAdapter, create_model

        self.repo = repo
        self.name = name
        self.permission = permission
        self.doc = inspect.getdoc(func) or ""
        hints = typing.get_type_hints(func)
        self.signature = inspect.signature(func)
        fields: dict[str, Any] = {}
        self.var_keyword: str | None = None
        for param in list(self.signature.parameters.values())[1:]:
            annotation = hints.get(param.name, Any)
            # Prefixed attribute, real name as alias: parameters like ``schema`` would shadow
            # BaseModel's own attributes.
            key = f"arg_{param.name}"
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                self.var_keyword = param.name
                annotation = dict[str, annotation]  # type: ignore[valid-type]
                # ``**values`` of an update: nothing to update is a caller error, not empty SQL.
                fields[key] = (annotation, Field(alias=param.name, min_length=1))
            elif param.default is inspect.Parameter.empty:
                fields[key] = (annotation, Field(alias=param.name))
            else:
                fields[key] = (annotation, Field(default=param.default, alias=param.name))
        model_name = f"{repo.title()}{name.title().replace('_', '')}Args"
        self.args_model: Any = create_model(model_name, __config__={"extra": "forbid"}, **fields)
        self.returns: TypeAdapter[Any] = TypeAdapter(hints.get("return", Any))

    @property
    def path(self) -> str:
        return f"{STORE_PREFIX}/{self.repo}/{self.name}"

    def call(self, repository: object, args: Any) -> Any:
        """Call the method with validated ``args`` the way Python would."""
        values = {k.removeprefix("arg_"): getattr(args, k) for k in type(args).model_fields}
        positional = []
        keywords: dict[str, Any] = {}
        for param in list(self.signature.parameters.values())[1:]:
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                keywords.update(values[param.name])
            elif param.kind is inspect.Parameter.POSITIONAL_ONLY:
                positional.append(values[param.name])
            else:
                keywords[param.name] = values[param.name]
        return getattr(repository, self.name)(*positional, **keywords)

    def payload(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The JSON body for a Python call, validated on the client before it is sent."""
        bound = self.signature.bind(None, *args, **kwargs)
        values: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            values[name] = value
        model = self.args_model.model_validate(values)
        dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
        return dumped

    def result(self, data: Any) -> Any:
        return self.returns.validate_python(data)


def method_specs() -> list[MethodSpec]:
    """One spec per exposed method of the store's protocols."""
    from modelyard.store.protocols import protocol_methods, repository_protocols

    missing = unclassified()
    if missing:
        raise StoreError(
            f"store methods with no line in remote.protocol.METHODS: {', '.join(missing)} "
            "(give each a permission, or LOCAL_ONLY)"
        )
    specs = []
    for repo, protocol in repository_protocols().items():
        for name in protocol_methods(protocol):
            access = METHODS[repo][name]
            if access != LOCAL_ONLY:
                specs.append(MethodSpec(repo, name, getattr(protocol, name), access))
    return specs


def unclassified() -> list[str]:
    """``repo.method`` of every protocol method that is neither exposed nor local-only, and of
    every line in :data:`METHODS` that names no protocol method."""
    from modelyard.store.protocols import protocol_methods, repository_protocols

    declared = {
        f"{repo}.{name}"
        for repo, protocol in repository_protocols().items()
        for name in protocol_methods(protocol)
    }
    listed = {f"{repo}.{name}" for repo, names in METHODS.items() for name in names}
    return sorted(declared ^ listed)
