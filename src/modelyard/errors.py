"""The one exception hierarchy of modelyard.

Every error a user can cause or meet derives from :class:`ModelyardError`. The CLI turns any of
them into one line and ``exit_code``; the server maps types to HTTP statuses in one table. Domain
code raises these and knows nothing of HTTP or terminals.

    ModelyardError                        exit 1
    ├── UsageError                        exit 2  the request itself is malformed
    │   ├── InvalidName                           a name that could escape a folder or is empty
    │   ├── InvalidReference                      not NAME, NAME@VERSION, NAME@ALIAS, NAME@sha256:…
    │   └── InvalidParameter                      a parameter name or value that does not fit
    ├── NotFound                                  an unknown name, version, run or digest
    ├── AlreadyExists
    ├── ConfigError                               a workspace that is missing or misconfigured
    │   └── WorkspaceNotFound
    ├── StoreError                                the metadata store
    │   ├── StoreUnavailable                      cannot connect
    │   └── StoreVersionError                     database schema newer than this code
    ├── ArtifactError                             the artifact store
    │   └── CorruptArtifact                       bytes on disk do not match their digest
    ├── DataError                                 a dataset that cannot be read or profiled
    └── RunError                                  tracked-run misuse (logging to a finished run)
"""

from __future__ import annotations


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


class NotFound(ModelyardError):
    pass


class AlreadyExists(ModelyardError):
    pass


class ConfigError(ModelyardError):
    pass


class WorkspaceNotFound(ConfigError):
    pass


class StoreError(ModelyardError):
    pass


class StoreUnavailable(StoreError):
    pass


class StoreVersionError(StoreError):
    pass


class ArtifactError(ModelyardError):
    pass


class CorruptArtifact(ArtifactError):
    def __init__(self, digest: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"artifact {digest} is corrupted: its bytes no longer match the digest{extra}"
        )
        self.digest = digest


class DataError(ModelyardError):
    pass


class RunError(ModelyardError):
    pass


__all__ = [
    "AlreadyExists",
    "ArtifactError",
    "ConfigError",
    "CorruptArtifact",
    "DataError",
    "InvalidName",
    "InvalidParameter",
    "InvalidReference",
    "ModelyardError",
    "NotFound",
    "RunError",
    "StoreError",
    "StoreUnavailable",
    "StoreVersionError",
    "UsageError",
    "WorkspaceNotFound",
]
