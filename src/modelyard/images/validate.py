"""Checks for every value that reaches a Dockerfile or a build command line.

A Dockerfile is a little program: a newline starts a new instruction, ``$(…)``, backticks and
``;`` run commands inside ``RUN``. Values come from workspace config, model metadata and the
command line, so each is checked here before it is written, and a bad one is refused with
:class:`~modelyard.errors.UnsafeDockerfileValue` naming the field — never quietly escaped away.
"""

from __future__ import annotations

import re

from modelyard.errors import UnsafeDockerfileValue

# (sequence, how to name it in the message)
_FORBIDDEN = (
    ("\n", "a newline"),
    ("\r", "a carriage return"),
    ("\x00", "a NUL byte"),
    ("$(", "'$('"),
    ("`", "a backtick"),
    (";", "';'"),
)

# docker/distribution reference grammar, simplified: [host[:port]/]path[:tag][@digest]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)"
_IMAGE_REF = re.compile(
    rf"^{_HOST}?{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@sha256:[0-9a-f]{64})?$"
)
_DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9.+-]+(?:=[A-Za-z0-9.+~:-]+)?\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_LABEL_KEY = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?\Z")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
_ABS_PATH = re.compile(r"^/[A-Za-z0-9_./-]*\Z")


def check_text(field: str, value: str) -> str:
    """``value`` unchanged, or :class:`UnsafeDockerfileValue` when it holds a newline, ``$(``,
    a backtick or ``;`` (the ways a value breaks out of its instruction)."""
    if not isinstance(value, str):
        raise UnsafeDockerfileValue(f"{field} must be a string, got {type(value).__name__}")
    for sequence, name in _FORBIDDEN:
        if sequence in value:
            raise UnsafeDockerfileValue(
                f"{field} {value!r} contains {name}, which could inject Dockerfile "
                "instructions or shell commands: refused"
            )
    return value


def check_image_ref(field: str, value: str) -> str:
    """An image reference (``name[:tag][@sha256:…]``, optionally with a registry host)."""
    check_text(field, value)
    if not _IMAGE_REF.match(value):
        raise UnsafeDockerfileValue(
            f"{field} {value!r} is not an image reference like 'registry:5000/team/name:tag'"
        )
    return value


def check_package(field: str, value: str) -> str:
    """A Debian package name, optionally pinned (``python3=3.11.2-1+b1``)."""
    check_text(field, value)
    if not _DEBIAN_PACKAGE.match(value):
        raise UnsafeDockerfileValue(f"{field} {value!r} is not a Debian package name")
    return value


def check_env_name(field: str, value: str) -> str:
    check_text(field, value)
    if not _ENV_NAME.match(value):
        raise UnsafeDockerfileValue(
            f"{field} {value!r} is not an environment variable name (letters, digits, '_')"
        )
    return value


def check_label_key(field: str, value: str) -> str:
    check_text(field, value)
    if not _LABEL_KEY.match(value):
        raise UnsafeDockerfileValue(
            f"{field} {value!r} is not a label key (lower-case reverse DNS, e.g. io.modelyard.run)"
        )
    return value


def check_user(field: str, value: str) -> str:
    check_text(field, value)
    if not _USER.match(value) or value == "root":
        raise UnsafeDockerfileValue(f"{field} {value!r} is not a non-root user name")
    return value


def check_abs_path(field: str, value: str) -> str:
    check_text(field, value)
    if not _ABS_PATH.match(value) or "/../" in f"{value}/":
        raise UnsafeDockerfileValue(f"{field} {value!r} is not a plain absolute path")
    return value


def check_relative_path(field: str, value: str) -> str:
    """A path inside the image's payload folder: relative, no ``..``, plain characters."""
    check_text(field, value)
    parts = value.split("/")
    if (
        not value
        or value.startswith("/")
        or any(p in {"", ".", ".."} for p in parts)
        or not re.fullmatch(r"[A-Za-z0-9_./-]+", value)
    ):
        raise UnsafeDockerfileValue(
            f"{field} {value!r} must be a relative path inside the payload (no '..', plain names)"
        )
    return value


def quote(value: str) -> str:
    """A double-quoted Dockerfile word for LABEL/ENV values that were checked already: the
    builder expands ``$VAR`` and honours backslashes inside quotes, so both are escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'
