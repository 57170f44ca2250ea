"""``modelyard reproduce NAME@V``: re-run what made a model version from its recorded inputs
(dataset versions, commit, environment lock, parameters) and compare, row by row."""

from modelyard.reproduce.run import (
    DIFFERS,
    MATCHED,
    NOT_CHECKED,
    Reproduction,
    Row,
    reproduce,
)

__all__ = ["DIFFERS", "MATCHED", "NOT_CHECKED", "Reproduction", "Row", "reproduce"]
