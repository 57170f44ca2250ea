"""One size formatter (decimal SI units) for the CLI, lineage labels and image sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.units import format_size
from modelyard.workspace import Workspace


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (2048, "2.0 kB"),
        (1_000_000, "1.0 MB"),  # base 1024 would say "976.6 KB": the disagreement this fixes
        (1_048_576, "1.0 MB"),
        (1_250_000, "1.2 MB"),
        (999_949, "999.9 kB"),
        (999_999, "1.0 MB"),  # never "1000.0 kB"
        (151_234_567, "151.2 MB"),
        (2 * 10**9, "2.0 GB"),
        (3 * 10**12, "3.0 TB"),
        (5 * 10**18, "5000.0 PB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        format_size(-1)


def test_the_cli_and_lineage_say_the_same_size(workspace: Workspace) -> None:
    """`data add` and `lineage` label one dataset version with the same size string."""
    data = Path("big.csv")
    row = "x" * 99 + "\n"
    data.write_text("col\n" + row * 10_000)  # 1,000,004 bytes: "1.0 MB", not "976.6 KB"
    runner = CliRunner()
    added = runner.invoke(cli, ["data", "add", str(data), "--name", "big"])
    assert added.exit_code == 0, added.output
    assert ", 1.0 MB, 1 file, csv" in added.stdout
    lineage = runner.invoke(cli, ["lineage", "big@1"])
    assert lineage.exit_code == 0, lineage.output
    assert "dataset big@1 csv 1.0 MB " in lineage.stdout
