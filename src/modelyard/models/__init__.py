"""The model registry: log a model in a run, register it as a numbered version, point aliases
at versions through enforced promotion gates, and serve a version.

Every function takes an optional ``workspace`` (default: the one around the current folder) and
accepts the same references as the CLI: ``churn@3``, ``churn@production``, ``churn@latest``,
``churn@sha256:…``.
"""

from typing import TYPE_CHECKING, Any

from modelyard.errors import PromotionRefused
from modelyard.models.aliases import (
    Promotion,
    alias_history,
    approve,
    check_promotion,
    promote,
    remove_alias,
)
from modelyard.models.diff import ModelDiff, diff
from modelyard.models.gates import (
    Check,
    CheckResult,
    Gate,
    GateReport,
    parse_check,
    set_gate,
)
from modelyard.models.log import log_model
from modelyard.models.manage import (
    archive,
    describe,
    get_model,
    list_models,
    list_versions,
    remove_tags,
    set_tags,
    trust_pickle,
    unarchive,
)
from modelyard.models.provenance import Provenance, provenance
from modelyard.models.register import register
from modelyard.models.resolve import resolve
from modelyard.models.serve import (
    ServingPlan,
    export_model,
    load,
    plan_serving,
    serve,
    serve_plan,
)
from modelyard.models.trust import check_code_trust
from modelyard.tracking.model_folder import LoggedModel

if TYPE_CHECKING:
    from modelyard.store.models_entities import (
        AliasMove,
        Approval,
        ModelVersion,
        RegisteredModel,
    )

_ENTITIES = {"AliasMove", "Approval", "ModelVersion", "RegisteredModel"}


def __getattr__(name: str) -> Any:
    # The store's values are re-exported lazily: importing them pulls in SQLAlchemy, which
    # `import modelyard.models` must not.
    if name in _ENTITIES:
        from modelyard.store import models_entities

        return getattr(models_entities, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Provenance",
    "AliasMove",
    "Approval",
    "Check",
    "CheckResult",
    "Gate",
    "GateReport",
    "LoggedModel",
    "ModelDiff",
    "ModelVersion",
    "Promotion",
    "PromotionRefused",
    "RegisteredModel",
    "ServingPlan",
    "alias_history",
    "approve",
    "archive",
    "check_code_trust",
    "check_promotion",
    "describe",
    "diff",
    "export_model",
    "get_model",
    "list_models",
    "list_versions",
    "load",
    "log_model",
    "parse_check",
    "plan_serving",
    "promote",
    "provenance",
    "register",
    "remove_alias",
    "remove_tags",
    "resolve",
    "serve",
    "serve_plan",
    "set_gate",
    "set_tags",
    "trust_pickle",
    "unarchive",
]
