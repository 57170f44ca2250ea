"""Names and references: ``NAME``, ``NAME@VERSION``, ``NAME@ALIAS``, ``NAME@sha256:…``.

One parser for every kind of thing (datasets, models, deployments) so the CLI, the Python API
and the REST API accept the same strings. Names are checked here because they end up in paths,
image tags and URLs: only a conservative character set gets through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelyard import validation
from modelyard.errors import InvalidName, InvalidReference
from modelyard.hashing import is_digest

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
LATEST = "latest"
MAX_VERSION = 2**31 - 1


def validate_name(name: str, kind: str = "name") -> str:
    """Return ``name`` if it is safe to use as a path segment, tag or URL segment (the rule
    of :func:`modelyard.validation.name`)."""
    return validation.name(name, kind)


def validate_alias(alias: str) -> str:
    return validation.alias(alias)


@dataclass(frozen=True)
class Ref:
    """A parsed reference. Exactly one of ``version``, ``alias`` or ``digest`` may be set;
    none set means the latest version."""

    name: str
    version: int | None = None
    alias: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, *, kind: str = "reference") -> Ref:
        if not isinstance(text, str) or not text.strip():
            raise InvalidReference(f"empty {kind}")
        text = text.strip()
        name, sep, selector = text.partition("@")
        if sep and not selector:
            raise InvalidReference(
                f"{kind} {text!r} ends with '@': give a version, alias or digest after it"
            )
        try:
            validate_name(name)
        except InvalidName as exc:
            raise InvalidReference(f"{kind} {text!r}: {exc}") from None
        if not sep or selector == LATEST:
            return cls(name)
        if selector.isascii() and selector.isdigit():  # not '²', which isdigit() takes
            version = int(selector)
            if version < 1:
                raise InvalidReference(f"{kind} {text!r}: versions start at 1")
            if version > MAX_VERSION:  # a database integer column holds no more
                raise InvalidReference(f"{kind} {text!r}: versions go up to {MAX_VERSION}")
            return cls(name, version=version)
        if selector.startswith("sha256:"):
            if not is_digest(selector):
                raise InvalidReference(f"{kind} {text!r}: a digest is sha256: and 64 hex digits")
            return cls(name, digest=selector)
        try:
            validate_alias(selector)
        except InvalidName:
            raise InvalidReference(
                f"{kind} {text!r}: after '@' comes a version number, an alias, "
                "'latest' or sha256:<hex>"
            ) from None
        return cls(name, alias=selector)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        if self.digest is not None:
            return f"{self.name}@{self.digest}"
        return self.name
