"""The seam between the deploy stage and the platforms it deploys to.

:mod:`modelyard.deploy.service` decides *what* to run and records it (revisions, events,
lineage, the one-rollout-at-a-time lease); a :class:`DeployTarget` only starts, switches,
inspects and stops what serves on one platform. Every target is found by name in
:mod:`modelyard.deploy.registry`; nothing else in modelyard compares target names.

Adding a target is one new module plus one registry entry: a class implementing
:class:`DeployTarget` with a frozen ``…Options`` dataclass of its settings (a subclass of
:class:`TargetOptions`), and its instance added to :data:`modelyard.deploy.registry.TARGETS`.

Rollback is not a target method: every target rolls back by rolling the earlier version out
again through :meth:`DeployTarget.rollout`, so a rollback is checked for readiness and recorded
as a revision like any rollout, with the settings :meth:`DeployTarget.recorded_options` reads
back from the deployment's record.

Strategies (``DeploySpec.strategy``), the vocabulary every target maps onto its platform:

- ``replace``: the new version takes all the traffic once it is ready (:meth:`rollout`).
- ``shadow``: the new version (the *candidate*) runs beside the serving one (the *primary*)
  and gets a copy of a sample of the live requests; its answers are logged, compared and
  dropped, never sent to a client, and its failures never reach one.
- ``canary``: the candidate answers a share of the live requests that grows step by step
  (e.g. 5, 25, 50, 100 %), optionally sticky by a request header.

Between steps the rollout controller (:mod:`modelyard.monitor.progressive`) compares the two
variants on the same window and either goes on, or aborts; the last step passed, the candidate
is rolled out with ``replace`` (a revision like any other) and the candidate stopped. A target
lists what it can do in :attr:`DeployTarget.strategies` and ``deploy`` refuses the others
before anything starts. The candidate is driven through four methods: :meth:`start_candidate`,
:meth:`set_split` (a :class:`TrafficSplit`, or None for "all to the primary, nothing copied"),
:meth:`candidate_urls` and :meth:`candidate_fault`, then :meth:`stop_candidate`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from modelyard.errors import InvalidParameter

if TYPE_CHECKING:
    from modelyard.deploy.spec import DeploySpec
    from modelyard.deploy.traffic import ReplicaHealth
    from modelyard.errors import DeployError
    from modelyard.store.deploy_entities import Deployment
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

REPLACE = "replace"
SHADOW = "shadow"
CANARY = "canary"
STRATEGIES = (REPLACE, SHADOW, CANARY)
#: The strategies that run a candidate beside the serving version.
PROGRESSIVE = (SHADOW, CANARY)

_O = TypeVar("_O", bound="TargetOptions")
_HEADER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


@dataclass(frozen=True)
class TargetOptions:
    """A target's own settings (subclassed once per target).

    Fields listed in ``CLIENTS`` are handles to the platform (a Docker engine, a Kubernetes API
    client) given for one call: never recorded. Every other field is recorded with the
    deployment, so a rollback or a retrain rolls out again with the same settings.
    """

    CLIENTS: ClassVar[tuple[str, ...]] = ()
    #: Strategies the platform runs with its own traffic shifting (SageMaker, Azure ML):
    #: :meth:`with_strategy` maps one onto these options, and the rollout itself is a
    #: ``replace`` as far as modelyard is concerned (no candidate, no controller).
    PLATFORM_STRATEGIES: ClassVar[tuple[str, ...]] = ()

    def with_strategy(self: _O, asked: PlatformStrategy) -> _O:
        """These options doing ``asked`` with the platform's own features."""
        raise InvalidParameter(f"{type(self).__name__} maps no strategy onto its platform")

    @classmethod
    def from_settings(cls: type[_O], settings: Mapping[str, Any] | None, **clients: Any) -> _O:
        """The options named in ``settings`` (a deployment's recorded config, or the CLI's
        flags; other keys and ``None`` values are ignored, so defaults apply) plus ``clients``."""
        given = {
            f.name: settings[f.name]
            for f in fields(cls)
            if settings and f.name not in cls.CLIENTS and settings.get(f.name) is not None
        }
        given.update({k: v for k, v in clients.items() if k in cls.CLIENTS and v is not None})
        return cls(**given)

    def settings(self) -> dict[str, Any]:
        """What is recorded with the deployment (everything but the clients)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.CLIENTS}


@dataclass(frozen=True)
class PlatformStrategy:
    """A shadow or canary rollout as ``deploy --strategy`` asks for it, for a target whose
    platform shifts the traffic itself: ``sample`` is the share of requests a shadow gets a copy
    of (0 to 1), ``steps`` the canary's shares in % and ``interval_s`` how long each lasts."""

    strategy: str
    sample: float = 1.0
    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    interval_s: float = 600.0

    def __post_init__(self) -> None:
        if self.strategy not in PROGRESSIVE:
            raise InvalidParameter(
                f"a platform strategy is shadow or canary, not {self.strategy!r}"
            )
        if not 0 < self.sample <= 1:
            raise InvalidParameter(
                f"a shadow's sample is a share above 0 up to 1, not {self.sample}"
            )
        if not self.steps or any(not 0 < s <= 100 for s in self.steps):
            raise InvalidParameter(f"canary steps are shares in % (0 to 100], not {self.steps}")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise InvalidParameter(f"canary steps must grow, not {list(self.steps)}")

    @property
    def sample_percent(self) -> int:
        return max(1, round(self.sample * 100))

    @property
    def first_percent(self) -> int:
        return max(1, round(self.steps[0]))

    @property
    def linear(self) -> bool:
        """The steps grow by the first one each time up to 100 (5, 10, 15 … 100)."""
        step = self.steps[0]
        return (
            len(self.steps) > 2
            and all(abs(s - step * (i + 1)) < 1e-9 for i, s in enumerate(self.steps[:-1]))
            and self.steps[-1] == 100
        )


def recorded(kind: type[_O], dep: Deployment, client: object | None = None) -> _O:
    """``kind`` read back from ``dep``'s recorded config, with ``client`` as its client field
    (the usual :meth:`DeployTarget.recorded_options`)."""
    return kind.from_settings(dep.config, **{name: client for name in kind.CLIENTS})


def options_of(spec: DeploySpec, kind: type[_O]) -> _O:
    """``spec.options`` as ``kind`` (its defaults when none were given)."""
    if spec.options is None:
        return kind()
    if not isinstance(spec.options, kind):
        raise InvalidParameter(
            f"the {spec.target} target takes {kind.__name__}, not {type(spec.options).__name__}"
        )
    return spec.options


@dataclass(frozen=True)
class ReplicaNetwork:
    """Where a target's replicas run when it is not this host: a loopback address there is the
    replica itself, so auth URLs on loopback are refused with these words."""

    where: str  # "a replica container's"
    who: str  # "containers"
    hint: str = ""  # how to reach this host from there, if there is a way


@dataclass(frozen=True)
class TrafficSplit:
    """How live traffic is shared between the serving version and the candidate.

    ``mode`` ``shadow``: ``percent`` of the requests the serving version answered are copied to
    the candidate (answers dropped). ``canary``: the candidate answers ``percent`` of the
    requests. ``sticky``: a request header whose value keeps one client on one variant
    (canary; requests without it are split at random)."""

    mode: str
    percent: float
    sticky: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in PROGRESSIVE:
            raise InvalidParameter(f"a traffic split is shadow or canary, not {self.mode!r}")
        if not 0 <= self.percent <= 100:
            raise InvalidParameter(f"a traffic share is 0 to 100 %, not {self.percent}")
        if self.sticky is not None and not _HEADER.fullmatch(self.sticky):
            raise InvalidParameter(
                f"the sticky key must be a request header name (letters, digits, '-'), "
                f"not {self.sticky!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "percent": self.percent, "sticky": self.sticky}


@dataclass(frozen=True)
class RolloutRequest:
    """One rollout as the deploy stage hands it to a target: ``version`` of ``spec.ref``,
    checked and recorded as a new revision, to be served as ``spec.name``.

    ``image`` is what replicas run (``None`` for a target that needs none); ``auth_url`` is the
    effective team server for predict tokens (the spec's, or the one the deployment has);
    ``existing`` is the deployment's record before this rollout (``None``: a new one)."""

    workspace: Workspace
    spec: DeploySpec
    version: ModelVersion
    image: str | None
    auth_url: str | None
    existing: Deployment | None = None


@dataclass(frozen=True)
class Rollout:
    """What a rollout did: ``config`` is merged into the deployment's record (where replicas
    log, the platform's object names…); ``report`` is the target's own account of it (e.g.
    :class:`~modelyard.deploy.kubernetes.KubeRolloutResult`)."""

    config: Mapping[str, Any] = field(default_factory=dict)
    report: object | None = None


class DeployTarget(Protocol):
    """One platform models are served on (``local``, ``docker``, ``kubernetes``…).

    A rollout that fails raises :class:`~modelyard.errors.RolloutFailed` with the replicas'
    last log lines and leaves what served before serving; the deploy stage records it.
    """

    name: str
    options_type: type[TargetOptions]
    #: Replicas run the model image (the registry's built or pushed image), not the host's venv.
    uses_images: bool
    #: The service listens on a port of this host (``DeploySpec.port``).
    publishes_port: bool
    default_replicas: int
    default_timeout_s: float
    strategies: tuple[str, ...]
    #: ``None``: replicas share this host's loopback; else why a loopback auth URL is refused.
    replica_network: ReplicaNetwork | None

    def image_for(self, version: ModelVersion) -> tuple[str | None, str | None]:
        """``(image reference, digest)`` the replicas run; raises
        :class:`~modelyard.errors.DeployError` saying how to make one when there is none."""
        ...

    def plan(self, request: RolloutRequest) -> list[dict[str, Any]] | None:
        """What a rollout would apply, for review (Kubernetes: the manifests); ``None`` when
        the target has nothing to show."""
        ...

    def rollout(self, request: RolloutRequest) -> Rollout:
        """Serve ``request.version``: start the service, or switch it without a lost request."""
        ...

    def is_running(self, ws: Workspace, dep: Deployment) -> bool: ...

    def replica_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        """Base URLs modelyard can probe and scrape, one per replica (empty: none reachable)."""
        ...

    def ready_replicas(
        self, ws: Workspace, dep: Deployment, health: tuple[ReplicaHealth, ...]
    ) -> int: ...

    def stop(self, ws: Workspace, dep: Deployment) -> None: ...

    def logs(self, ws: Workspace, dep: Deployment, lines: int) -> str: ...

    def recorded_options(self, dep: Deployment, *, client: object | None = None) -> TargetOptions:
        """The options ``dep`` was rolled out with (read back from its record), for a rollback
        or a retrain to roll out the same way; ``client`` reaches the platform if given."""
        ...

    def address(self, dep: Deployment) -> str:
        """Where the service answers, for people (``http://127.0.0.1:8080``, ``ml/churn``)."""
        ...

    # ---- progressive rollouts (targets whose strategies include shadow / canary) ----------
    def start_candidate(self, request: RolloutRequest) -> Rollout:
        """Start ``request.version`` beside what serves, taking no traffic yet; its logs go
        where the serving version's do. ``Rollout.config`` is recorded as the deployment's
        ``candidate``. Raises :class:`~modelyard.errors.RolloutFailed` if it never becomes
        ready (nothing is left running then)."""
        ...

    def set_split(self, ws: Workspace, dep: Deployment, split: TrafficSplit | None) -> None:
        """Share the traffic as ``split`` says (None: all to the serving version, nothing
        copied); takes effect within a second."""
        ...

    def candidate_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        """Base URLs of the candidate's replicas that this host can probe and scrape."""
        ...

    def candidate_fault(self, ws: Workspace, dep: Deployment) -> str | None:
        """Why the candidate is unwell (exited, restarted), or None."""
        ...

    def stop_candidate(self, ws: Workspace, dep: Deployment) -> None:
        """Send nothing more to the candidate and stop it (idempotent)."""
        ...


def pushed_image(version: ModelVersion, pulls_from: str, registry: str) -> tuple[str, str]:
    """``(image reference, digest)`` of ``version``'s pushed image, for a target whose replicas
    pull it (``pulls_from``: "a cluster pulls from a registry"); a
    :class:`~modelyard.errors.DeployError` saying how to push one (to ``registry``) otherwise."""
    from modelyard.errors import DeployError

    if version.image_ref is None or version.image_digest is None:
        raise DeployError(
            f"{version.ref} has no pushed image; {pulls_from}: modelyard build {version.ref} "
            f"&& modelyard push {version.ref} --registry {registry}"
        )
    return version.image_ref, version.image_digest


class TargetDefaults:
    """What most targets do the same way, for a target class to inherit (the type checker holds
    it to :class:`DeployTarget` all the same): the ``replace`` strategy only, nothing to show
    for a dry run, ready replicas counted from their health, options read back from the record,
    and a service on a port of this host."""

    options_type: type[TargetOptions]
    strategies: tuple[str, ...] = (REPLACE,)

    def plan(self, request: RolloutRequest) -> list[dict[str, Any]] | None:
        return None

    def ready_replicas(
        self, ws: Workspace, dep: Deployment, health: tuple[ReplicaHealth, ...]
    ) -> int:
        return sum(1 for r in health if r.ready)

    def recorded_options(self, dep: Deployment, *, client: object | None = None) -> TargetOptions:
        return recorded(self.options_type, dep, client)

    def address(self, dep: Deployment) -> str:
        return f"http://127.0.0.1:{dep.port}"

    def _no_candidates(self) -> DeployError:
        from modelyard.errors import DeployError

        name = getattr(self, "name", type(self).__name__)
        return DeployError(f"the {name} target has no shadow or canary rollouts")

    def start_candidate(self, request: RolloutRequest) -> Rollout:
        raise self._no_candidates()

    def set_split(self, ws: Workspace, dep: Deployment, split: TrafficSplit | None) -> None:
        raise self._no_candidates()

    def candidate_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        return []

    def candidate_fault(self, ws: Workspace, dep: Deployment) -> str | None:
        return None

    def stop_candidate(self, ws: Workspace, dep: Deployment) -> None:
        return None
