from __future__ import annotations

import pytest

from modelyard.errors import InvalidName, InvalidReference
from modelyard.refs import Ref, validate_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("churn", Ref("churn")),
        ("churn@latest", Ref("churn")),
        ("churn@3", Ref("churn", version=3)),
        ("churn@production", Ref("churn", alias="production")),
        ("my.data_set-2@12", Ref("my.data_set-2", version=12)),
        ("c@sha256:" + "ab" * 32, Ref("c", digest="sha256:" + "ab" * 32)),
    ],
)
def test_parse(text: str, expected: Ref) -> None:
    assert Ref.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("churn@", "ends with '@'"),
        ("../etc@1", "must not contain"),
        ("a/b@1", "must not contain"),
        ("/abs", "must not contain"),
        ("churn@0", "versions start at 1"),
        ("churn@sha256:abc", "64 hex digits"),
        ("churn@$(rm)", "after '@' comes"),
        ("-x", "may use letters"),
        ("churn@" + "9" * 30, "versions go up to 2147483647"),  # was OverflowError in SQLite
        ("churn@\u00b2", "after '@' comes"),  # '²'.isdigit(), int('²') a ValueError
    ],
)
def test_bad_references_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message.replace("(", r"\(").replace(")", r"\)")):
        Ref.parse(text)


def test_round_trip() -> None:
    for text in ["churn", "churn@3", "churn@staging"]:
        assert str(Ref.parse(text)) == text


@pytest.mark.parametrize("name", ["..", ".", "a..b", "a/b", "a\\b", "", "x" * 129, "a b"])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_name(name)


def test_a_trailing_newline_is_not_a_name() -> None:
    with pytest.raises(InvalidName):
        validate_name("churn\n")
    with pytest.raises(InvalidReference):
        Ref.parse("chu\nrn@3")
    assert Ref.parse(" churn@3\n") == Ref("churn", version=3)  # surrounding space is trimmed


def test_a_trailing_newline_is_not_a_digest() -> None:
    from modelyard.hashing import is_digest

    assert not is_digest("sha256:" + "a" * 64 + "\n")
