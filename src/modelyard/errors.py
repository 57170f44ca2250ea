"""The one exception hierarchy of modelyard.

Every error a user can cause or meet derives from :class:`ModelyardError`. The CLI turns any of
them into one line and ``exit_code``; the server maps types to HTTP statuses in one table. Domain
code raises these and knows nothing of HTTP or terminals.

    ModelyardError                        exit 1
    ├── UsageError                        exit 2  the request itself is malformed
    │   ├── InvalidName                           a name that could escape a folder or is empty
    │   ├── InvalidReference                      not NAME, NAME@VERSION, NAME@ALIAS, NAME@sha256:…
    │   ├── InvalidParameter                      a parameter name or value that does not fit
    │   │   ├── UnsafeDockerfileValue             a value that could inject into a Dockerfile
    │   │   ├── PayloadTooLarge                   a request or upload over a configured cap
    │   │   └── InvalidValue                      a value outside its domain (also a ValueError)
    │   ├── InvalidInput                          a prediction request not fitting the signature
    │   └── InvalidRequest                        a prediction request breaking its protocol
    ├── NotFound                                  an unknown name, version, run or digest
    ├── AlreadyExists
    ├── AuthError                                 the team server refused the caller
    │   ├── Unauthorized                          no valid token (missing, expired, revoked)
    │   ├── Forbidden                             the token's role lacks the permission
    │   └── AuthUnavailable                       the team server gave a model server no verdict
    ├── ConfigError                               a workspace that is missing or misconfigured
    │   ├── WorkspaceNotFound
    │   └── ServerSideOnly                        a store method only the server runs, called
    │                                             through a client (also an AttributeError)
    ├── StoreError                                the metadata store
    │   ├── StoreUnavailable                      cannot connect
    │   └── StoreVersionError                     database schema newer than this code
    ├── ArtifactError                             the artifact store
    │   ├── CorruptArtifact                       bytes on disk do not match their digest
    │   ├── InsufficientStorage                   not enough free space for a write
    │   └── ArtifactUnavailable                   the artifact bucket does not answer
    ├── DataError                                 a dataset that cannot be read or profiled
    ├── GateFailed                                a promotion refused by its gate's checks
    │   └── PromotionRefused                      ... with the gate's whole report attached
    ├── RunError                                  tracked-run misuse (logging to a finished run)
    ├── LogWriteError                             a prediction or feedback record not written
    ├── FlavorError                               a model that cannot be saved, loaded or run
    │   └── UnsafeModel                           types outside the allow-list, or untrusted pickle
    ├── ImageError                                building or running container images
    │   ├── EngineUnavailable                     no Docker engine answers on its socket
    │   ├── ImageBuildFailed                      a build failed (the build log is attached)
    │   ├── WheelhouseError                       a locked package has no wheel to install
    │   ├── RegistryError                         a container registry refused or did not answer
    │   └── ImageVerificationFailed               an image whose registry content does not match
    │                                             its registered version (modelyard verify)
    ├── RetrainStopped                            a retrain stopped between two steps (SIGTERM,
    │                                             or its lease was lost)
    ├── HTTPError                                 a model server's error answer (status, headers)
    ├── PipelineError                             a pipeline run that could not complete
    │   ├── PipelineDefinitionError               the static graph is wrong (cycle, missing input)
    │   └── StepFailed                            a step raised, was killed or timed out
    └── DeployError                               a deployment that could not be started or changed
        ├── RolloutFailed                         a new version never became ready (rolled back)
        └── RolloutAborted                        a shadow/canary candidate failed its analysis
"""

from __future__ import annotations

from typing import Any, Protocol


class ModelyardError(Exception):
    """Root of every error modelyard raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ModelyardError):
    exit_code = 2


class InvalidName(UsageError):
    pass


class InvalidReference(UsageError):
    pass


class InvalidParameter(UsageError):
    pass


class InvalidValue(InvalidParameter, ValueError):
    """A value of the right type outside its domain (a negative size, a malformed digest). Also
    a :class:`ValueError`, so callers that caught that before keep working."""


class UnsafeDockerfileValue(InvalidParameter):
    pass


class PayloadTooLarge(InvalidParameter):
    pass


class InvalidInput(UsageError):
    """A prediction request that does not match the model's signature; ``field`` names the
    column, input or JSON key at fault so the server can say which one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidRequest(UsageError):
    """A prediction request that breaks the protocol it is sent in (binary framing, an unknown
    requested output, an unsupported parameter): HTTP 400, gRPC ``INVALID_ARGUMENT``."""


class NotFound(ModelyardError):
    pass


class AlreadyExists(ModelyardError):
    pass


class AuthError(ModelyardError):
    pass


class Unauthorized(AuthError):
    pass


class Forbidden(AuthError):
    pass


class AuthUnavailable(AuthError):
    """The team server gave a model server no verdict on a token; ``reason`` is for the log
    (it never holds a token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(ModelyardError):
    pass


class WorkspaceNotFound(ConfigError):
    pass


class ServerSideOnly(ConfigError, AttributeError):
    """A store method that needs the database itself (marked local-only), called through the
    client of a team server. An ``AttributeError`` too: for a client it is not there."""


class StoreError(ModelyardError):
    pass


class StoreUnavailable(StoreError):
    pass


class StoreVersionError(StoreError):
    pass


class ArtifactError(ModelyardError):
    pass


class ArtifactUnavailable(ArtifactError):
    pass


class CorruptArtifact(ArtifactError):
    def __init__(self, digest: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"artifact {digest} is corrupted: its bytes no longer match the digest{extra}"
        )
        self.digest = digest


class InsufficientStorage(ArtifactError):
    pass


class DataError(ModelyardError):
    pass


class LogWriteError(ModelyardError):
    """The prediction or feedback log could not be written (a full disk): the requests whose
    records it held are refused, never answered as if logged."""


class RunError(ModelyardError):
    pass


class GateFailed(ModelyardError):
    """A promotion its gate refused. ``failed_checks`` are the checks that failed, as text."""

    def __init__(self, message: str, failed_checks: list[str]) -> None:
        super().__init__(message)
        self.failed_checks = failed_checks


class GateReportLike(Protocol):
    """What :class:`PromotionRefused` needs of a gate report
    (:class:`modelyard.models.gates.GateReport`)."""

    @property
    def ref(self) -> str: ...

    @property
    def alias(self) -> str: ...

    def failed_texts(self) -> list[str]: ...


class PromotionRefused(GateFailed):
    """The gate refused; ``report`` (a :class:`modelyard.models.gates.GateReport`) has every
    check, passed and failed, for display."""

    def __init__(self, report: GateReportLike) -> None:
        failed = report.failed_texts()
        super().__init__(
            f"{report.ref} cannot become {report.alias!r}: {len(failed)} gate check(s) failed "
            "(use --force to override; the override is recorded)",
            failed,
        )
        self.report: Any = report


class RetrainStopped(ModelyardError):
    """Stopped between two steps of a retrain: asked to (SIGTERM), or its lease was lost."""


class HTTPError(ModelyardError):
    """A model server's answer with an error ``status``; ``headers`` are extra response headers
    (WWW-Authenticate, Retry-After); ``code`` is the MLflow error code ``/invocations`` reports
    when the status alone does not say it. Raised and answered inside :mod:`modelyard.serving`
    only."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.code = code


class PipelineError(ModelyardError):
    pass


class PipelineDefinitionError(PipelineError):
    pass


class StepFailed(PipelineError):
    pass


class ImageError(ModelyardError):
    pass


class EngineUnavailable(ImageError):
    pass


class ImageBuildFailed(ImageError):
    """``log`` keeps the whole build output; the message carries only its last lines."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class WheelhouseError(ImageError):
    pass


class FlavorError(ModelyardError):
    pass


class UnsafeModel(FlavorError):
    pass


class RegistryError(ImageError):
    """A push or pull a container registry refused (credentials) or never answered."""


class ImageVerificationFailed(ImageError):
    """An image whose labels, model layer or SBOM in the registry differ from its registered
    version (``modelyard verify``)."""


class DeployError(ModelyardError):
    """A deployment that could not be started, changed or stopped (a port in use, a target
    that is not there)."""


class RolloutFailed(DeployError):
    """A new version did not become ready; the previous one kept serving. ``logs`` holds the
    last lines the failed replica printed."""

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


class RolloutAborted(DeployError):
    """A shadow or canary candidate failed the analysis of a step (or the rollout was
    stopped): the candidate was stopped and the serving version kept all the traffic.
    ``result`` is the recorded :class:`~modelyard.monitor.progressive.RolloutResult`."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


__all__ = [
    "AlreadyExists",
    "ArtifactError",
    "ArtifactUnavailable",
    "AuthError",
    "AuthUnavailable",
    "ConfigError",
    "CorruptArtifact",
    "DataError",
    "DeployError",
    "EngineUnavailable",
    "FlavorError",
    "Forbidden",
    "GateFailed",
    "GateReportLike",
    "HTTPError",
    "ImageBuildFailed",
    "ImageError",
    "ImageVerificationFailed",
    "InsufficientStorage",
    "InvalidInput",
    "InvalidName",
    "InvalidParameter",
    "InvalidReference",
    "InvalidRequest",
    "InvalidValue",
    "LogWriteError",
    "ModelyardError",
    "NotFound",
    "PayloadTooLarge",
    "PipelineDefinitionError",
    "PipelineError",
    "PromotionRefused",
    "RegistryError",
    "RetrainStopped",
    "RolloutAborted",
    "RolloutFailed",
    "RunError",
    "ServerSideOnly",
    "StepFailed",
    "StoreError",
    "StoreUnavailable",
    "StoreVersionError",
    "Unauthorized",
    "UnsafeDockerfileValue",
    "UnsafeModel",
    "UsageError",
    "WheelhouseError",
    "WorkspaceNotFound",
]
