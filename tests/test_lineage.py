"""Lineage trees: dataset version -> run -> artifacts, both ways, and `modelyard lineage`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.errors import InvalidParameter, NotFound
from modelyard.lineage import build_lineage, default_node_types
from modelyard.tracking import LineageNode, NodeType, register_node_type, start_run
from modelyard.workspace import Workspace

pytestmark = pytest.mark.remote  # the same tests against a team server too


def _chain(ws: Workspace, tmp_path: Path) -> tuple[str, str, str]:
    """sensors@1 -input-> run -output-> model.bin, and run -output-> widget w-2 (a node type
    that no stage registers)."""
    ws.store.datasets.add_version(
        "sensors",
        digest="sha256:" + "a" * 64,
        kind="file",
        format="csv",
        size=2048,
        file_count=1,
        schema=None,
        profile=None,
        source=None,
    )
    (tmp_path / "model.bin").write_bytes(b"weights")
    with start_run(name="train", workspace=ws) as run:
        run.use_dataset("sensors@1")
        digest = run.log_artifact(tmp_path / "model.bin")
        run.add_output("widget", "w-2")
    return "sensors@1", run.id, digest


def _shape(node: LineageNode) -> list[tuple[str | None, str, str]]:
    return [(n.direction, n.node_type, n.node_id) for n in node.walk()]


def test_downstream_from_a_dataset(workspace: Workspace, tmp_path: Path) -> None:
    ref, run_id, digest = _chain(workspace, tmp_path)
    tree = build_lineage(workspace, ref, direction="down")
    assert _shape(tree) == [
        (None, "dataset_version", ref),
        ("down", "run", run_id),
        ("down", "artifact", digest),
        ("down", "widget", "w-2"),
    ]
    assert tree.label == "dataset sensors@1 csv 2.0 kB aaaaaaaaaaaa"
    run_node = tree.children[0]
    assert (run_node.relation, run_node.label) == ("input", f"run {run_id[:12]} train [finished]")
    assert run_node.children[0].label == f"artifact model.bin {digest[7:19]}"
    assert run_node.children[1].label == "widget w-2"  # unregistered type: generic label


def test_both_ways_from_a_run_prefix(workspace: Workspace, tmp_path: Path) -> None:
    ref, run_id, digest = _chain(workspace, tmp_path)
    tree = build_lineage(workspace, run_id[:6])
    assert (tree.node_type, tree.node_id) == ("run", run_id)
    assert [(c.direction, c.node_id, c.relation) for c in tree.children] == [
        ("up", ref, "input"),
        ("down", digest, "output"),
        ("down", "w-2", "output"),
    ]
    up = build_lineage(workspace, f"artifact:{digest}", direction="up")
    assert _shape(up) == [
        (None, "artifact", digest),
        ("up", "run", run_id),
        ("up", "dataset_version", ref),
    ]


def test_depth_limit_and_repeated_nodes(workspace: Workspace, tmp_path: Path) -> None:
    ref, run_id, _ = _chain(workspace, tmp_path)
    with start_run(name="again", workspace=workspace) as second:
        second.use_dataset(ref)
        second.add_output("run", run_id)  # a diamond: dataset -> second -> first, dataset -> first
    tree = build_lineage(workspace, ref, direction="down", depth=1)
    assert all(not c.children for c in tree.children)
    assert [c.truncated for c in tree.children] == [True, True]
    full = build_lineage(workspace, ref, direction="down")
    assert sum(1 for n in full.walk() if n.node_id == run_id and not n.repeated) == 1
    assert any(n.repeated for n in full.walk())


def test_unknown_things_and_bad_arguments(workspace: Workspace) -> None:
    with pytest.raises(NotFound, match="'ghost@3' matches no run id, dataset version"):
        build_lineage(workspace, "ghost@3")
    with pytest.raises(NotFound, match="no run id 'ffff'"):
        build_lineage(workspace, "run:ffff")
    with pytest.raises(InvalidParameter, match="direction"):
        build_lineage(workspace, "x", direction="sideways")


def test_other_stages_register_node_types(workspace: Workspace, tmp_path: Path) -> None:
    _, run_id, _ = _chain(workspace, tmp_path)
    types = default_node_types()
    register_node_type(
        types,
        NodeType(
            "widget",
            "widget",
            lambda ws, node_id: f"widget {node_id.upper()}",
            lambda ws, text: text if text.startswith("w-") else None,
        ),
    )
    tree = build_lineage(workspace, "w-2", direction="up", node_types=types)
    assert tree.label == "widget W-2"
    assert [n.node_id for n in tree.walk()][1] == run_id
    # the default registry is built fresh each time: nothing leaked into it
    assert "widget" not in default_node_types().names()


def test_lineage_command(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    ref, run_id, digest = _chain(workspace, tmp_path)
    result = CliRunner().invoke(cli, ["lineage", ref, "--down"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "dataset sensors@1 csv 2.0 kB aaaaaaaaaaaa\n"
        f"└── input → run {run_id[:12]} train [finished]\n"
        f"    ├── output → artifact model.bin {digest[7:19]}\n"
        "    └── output → widget w-2\n"
    )
    result = CliRunner().invoke(cli, ["lineage", run_id[:8]])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:3] == [
        f"run {run_id[:12]} train [finished]",
        "├── upstream",
        "│   └── input ← dataset sensors@1 csv 2.0 kB aaaaaaaaaaaa",
    ]
    assert "└── downstream" in result.stdout
    result = CliRunner().invoke(cli, ["lineage", "ghost@1"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 'ghost@1' matches no run id, dataset version")
    assert result.stderr.count("\n") == 1
    with start_run(workspace=workspace) as lonely:
        pass
    result = CliRunner().invoke(cli, ["lineage", lonely.id, "--up"])
    assert result.stdout.splitlines()[1] == "└── (no lineage recorded)"
