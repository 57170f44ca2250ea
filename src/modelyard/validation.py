"""One set of checks for every door: the library, the CLI (through the library) and the HTTP API
(through the store's repositories, which call these before they write or query).

Light on purpose (standard library only): the rules are the same wherever a value comes in, so a
value the CLI refuses is refused over HTTP too, with the same error.

- names of datasets, models, deployments: a conservative character set (they become paths,
  image tags and URL segments): no path separators, ``..``, control characters, newlines, SQL
  ``LIKE`` wildcards (``%``), at most 128 characters;
- aliases: letters, digits, ``_``, ``-``; a protected alias (``production``) is recognised after
  normalisation (Unicode NFKC, case, surrounding whitespace), and a look-alike of it refused;
- free texts (run names, metric, parameter and tag keys): no control characters, bounded;
- metric values: finite numbers only (±Inf and NaN are refused, never stored);
- parameter values: text without NUL, bounded; a non-finite number is refused;
- pagination: ``limit`` 1..10,000 and ``offset`` 0..1,000,000,000;
- ``like_pattern`` escapes user text for a SQL ``LIKE``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Final

from modelyard.errors import InvalidName, InvalidParameter

MAX_NAME: Final = 128
MAX_ALIAS: Final = 64
MAX_KEY: Final = 256
MAX_TEXT: Final = 256
MAX_PARAM_VALUE: Final = 6000
MAX_LIMIT: Final = 10_000
MAX_OFFSET: Final = 1_000_000_000
MAX_STEP: Final = 2**63 - 1
PROTECTED_ALIASES: Final = frozenset({"production"})
LATEST: Final = "latest"

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_ALIAS_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")


def has_control(text: str) -> bool:
    """Any control or format character (``\\n``, NUL, ``\\x1b``, bidi overrides…)."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def name(value: Any, kind: str = "name") -> str:
    """A name that is safe as a path segment, image tag and URL segment."""
    if not isinstance(value, str) or not value:
        raise InvalidName(f"{kind} must not be empty")
    if has_control(value):
        raise InvalidName(f"{kind} {value[:40]!r} must not contain control characters")
    if value in {".", ".."} or ".." in value or "/" in value or "\\" in value:
        raise InvalidName(f"{kind} {value[:40]!r} must not contain '/', '\\' or '..'")
    if not _NAME_RE.fullmatch(value):
        raise InvalidName(
            f"{kind} {value[:40]!r} may use letters, digits, '.', '_' and '-', must start with "
            f"a letter or digit and be at most {MAX_NAME} characters"
        )
    return value


def normalise_alias(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().casefold()


def is_protected_alias(value: Any) -> bool:
    """Whether ``value`` names (or looks like) a protected alias, however it is spelled."""
    return isinstance(value, str) and normalise_alias(value) in PROTECTED_ALIASES


def alias(value: Any) -> str:
    """An alias: letters, digits, ``_`` and ``-``, starting with a letter, not ``latest``. A
    spelling of a protected alias other than its own (``Production``, ``ＰＲＯＤＵＣＴＩＯＮ``) is
    refused, so nothing can pass for it."""
    if not isinstance(value, str) or not value:
        raise InvalidName("alias must not be empty")
    if has_control(value):
        raise InvalidName(f"alias {value[:40]!r} must not contain control characters")
    if is_protected_alias(value) and value not in PROTECTED_ALIASES:
        canonical = normalise_alias(value)
        raise InvalidName(f"alias {value!r} looks like the protected alias {canonical!r}; use that")
    if not _ALIAS_RE.fullmatch(value) or value == LATEST:
        raise InvalidName(
            f"alias {value[:40]!r} must start with a letter, use letters, digits, '_' or '-', "
            f"be at most {MAX_ALIAS} characters, and not be {LATEST!r}"
        )
    return value


def text(value: Any, kind: str, max_len: int = MAX_KEY) -> str:
    """A non-empty free text (a key, a run name): no control characters, at most ``max_len``."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter(f"{kind} must be a non-empty string, not {value!r}")
    if len(value) > max_len:
        raise InvalidParameter(f"{kind} {value[:40]!r}… is longer than {max_len} characters")
    if has_control(value):
        raise InvalidParameter(f"{kind} {value[:40]!r} must not contain control characters")
    return value


def metric_value(key: str, value: Any) -> float:
    """A finite number (numpy scalars included); bools, strings, NaN and ±Inf are refused."""
    if isinstance(value, bool | str | bytes):
        raise InvalidParameter(f"metric {key!r} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidParameter(
            f"metric {key!r} must be a number, not {type(value).__name__}"
        ) from None
    if not math.isfinite(number):
        raise InvalidParameter(
            f"metric {key!r} is {number}: only finite values are stored "
            "(skip the point, or end the run as failed)"
        )
    return number


def step(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STEP:
        raise InvalidParameter(f"metric step must be an integer from 0 to 2^63-1, not {value!r}")
    return value


def param_value(value: Any) -> str:
    """A parameter as stored: its text. A non-finite number has no portable text: refused."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidParameter(f"parameter value {value} is not finite")
    out = value if isinstance(value, str) else str(value)
    if len(out) > MAX_PARAM_VALUE:
        raise InvalidParameter(f"parameter value is longer than {MAX_PARAM_VALUE} characters")
    if "\x00" in out:
        raise InvalidParameter("parameter value must not contain NUL characters")
    return out


def page(limit: Any, offset: Any = 0) -> tuple[int, int]:
    """Pagination numbers within bounds (a huge offset is a mistake, not a query)."""
    for what, value, low, high in (
        ("limit", limit, 1, MAX_LIMIT),
        ("offset", offset, 0, MAX_OFFSET),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidParameter(f"{what} must be an integer from {low} to {high}, not {value!r}")
    return limit, offset


def like_pattern(value: str) -> str:
    """``value`` for a SQL ``LIKE ... ESCAPE '\\'``: its ``%``, ``_`` and ``\\`` match
    themselves."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


__all__ = [
    "MAX_LIMIT",
    "MAX_OFFSET",
    "PROTECTED_ALIASES",
    "alias",
    "has_control",
    "is_protected_alias",
    "like_pattern",
    "metric_value",
    "name",
    "normalise_alias",
    "page",
    "param_value",
    "step",
    "text",
]
