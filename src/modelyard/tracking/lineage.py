"""Walk the lineage graph from one thing, upstream (what it came from) and downstream (what came
of it), into a tree ready to print.

Every stage records arrows in ``store.lineage`` with its own node types. How a node is labelled,
and which user strings name it, is described by a :class:`NodeType`; tracking's own are
:data:`RUN_NODE`, :data:`DATASET_VERSION_NODE` and :data:`ARTIFACT_NODE`, each later stage
describes its own in its ``lineage.py``, and :mod:`modelyard.lineage` (above the stages) is the
one explicit list of them all. Tracking imports none of the stages: :func:`walk_lineage` walks
over whatever registry it is given. A node whose type is not registered still appears,
labelled ``type id``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from modelyard.errors import InvalidParameter, InvalidReference, NotFound

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

UP = "up"
DOWN = "down"
BOTH = "both"
DIRECTIONS = (BOTH, UP, DOWN)

# The documented ``TYPE:`` prefixes of ``modelyard lineage`` (each full type name works too).
SHORT_TYPES = {
    "dataset": "dataset_version",
    "model": "model_version",
    "report": "monitor_report",
}

Labeller = Callable[["Workspace", str], str]
Resolver = Callable[["Workspace", str], "str | None"]


@dataclass(frozen=True)
class NodeType:
    """How lineage shows and finds one kind of node.

    ``resolve`` turns what a user typed into a node id, or returns None when the text does not
    name a node of this type (so the next type can try); it raises only when the text clearly
    means this type but is unusable (an ambiguous run-id prefix).
    """

    name: str  # as stored in lineage arrows: "run", "dataset_version", …
    title: str  # for messages: "run id", "dataset version"
    label: Labeller
    resolve: Resolver


class NodeTypes:
    """An ordered registry of node types; resolution tries them in registration order."""

    def __init__(self, types: Iterable[NodeType] = ()) -> None:
        self._types: dict[str, NodeType] = {}
        for node_type in types:
            self.register(node_type)

    def register(self, node_type: NodeType) -> None:
        """Add a node type, or replace the one with the same name (keeping its position)."""
        self._types[node_type.name] = node_type

    def get(self, name: str) -> NodeType | None:
        return self._types.get(name)

    def __iter__(self) -> Iterator[NodeType]:
        return iter(list(self._types.values()))

    def names(self) -> list[str]:
        return list(self._types)

    @staticmethod
    def prefix(name: str) -> str:
        """The short ``TYPE:`` prefix of a node type (``dataset`` for ``dataset_version``)."""
        return next((short for short, full in SHORT_TYPES.items() if full == name), name)

    def label(self, ws: Workspace, node_type: str, node_id: str) -> str:
        known = self._types.get(node_type)
        if known is None:
            return f"{node_type} {node_id}"
        return known.label(ws, node_id)

    def resolve(self, ws: Workspace, thing: str) -> tuple[str, str]:
        """``(node_type, node_id)`` for a user string. ``TYPE:ID`` (``run:1a2b``,
        ``dataset:sensors@4``, ``model:churn@2``; the full type names work too) picks the type.
        Without one, a string that names things of two types (a dataset and a model both called
        ``cancer``) is an error listing the typed choices — never a silent pick."""
        text = thing.strip()
        prefix, sep, rest = text.partition(":")
        explicit = self._types.get(SHORT_TYPES.get(prefix, prefix)) if sep else None
        if explicit is not None:
            node_id = explicit.resolve(ws, rest)
            if node_id is None:
                raise NotFound(f"no {explicit.title} {rest!r}")
            return explicit.name, node_id
        matches = [
            (node_type, node_id)
            for node_type in self._types.values()
            if (node_id := node_type.resolve(ws, text)) is not None
        ]
        if len(matches) == 1:
            return matches[0][0].name, matches[0][1]
        if matches:
            choices = ", ".join(f"{self.prefix(t.name)}:{text} ({t.title})" for t, _ in matches)
            raise InvalidReference(f"{thing!r} names {len(matches)} things; say which: {choices}")
        titles = [t.title for t in self._types.values()]
        kinds = ", ".join(titles[:-1]) + f" or {titles[-1]}" if len(titles) > 1 else "".join(titles)
        raise NotFound(f"{thing!r} matches no {kinds}")


def register_node_type(registry: NodeTypes, node_type: NodeType) -> None:
    """Add ``node_type`` to ``registry`` (the same as ``registry.register``)."""
    registry.register(node_type)


@dataclass(frozen=True)
class LineageNode:
    """One node of the printed tree. ``relation`` and ``direction`` describe the arrow between
    this node and its parent in the tree: ``up`` means this node is upstream of (an input to)
    its parent."""

    node_type: str
    node_id: str
    label: str
    relation: str | None = None
    direction: str | None = None
    children: tuple[LineageNode, ...] = ()
    truncated: bool = False  # the depth limit stopped the walk; there is more beyond
    repeated: bool = False  # already shown elsewhere in this tree, not expanded again

    def walk(self) -> Iterable[LineageNode]:
        """This node and every descendant, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


def walk_lineage(
    workspace: Workspace,
    thing: str,
    types: NodeTypes,
    *,
    direction: str = BOTH,
    depth: int = 10,
) -> LineageNode:
    """The lineage tree around ``thing`` (a run id or prefix, ``dataset@3``, a digest…), whose
    node types ``types`` resolves and labels (:func:`modelyard.lineage.build_lineage` passes
    every stage's).

    Each direction is walked breadth of arrows, ``depth`` levels deep; a node reached twice is
    shown once more as ``repeated`` and not expanded, so diamond-shaped graphs stay small.
    """
    if direction not in DIRECTIONS:
        raise InvalidParameter(
            f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}"
        )
    if depth < 1:
        raise InvalidParameter(f"depth must be at least 1, not {depth}")
    root_type, root_id = types.resolve(workspace, thing)
    children: list[LineageNode] = []
    for way in (UP, DOWN):
        if direction in (way, BOTH):
            walker = _Walker(workspace, types, way)
            children.extend(walker.children(root_type, root_id, depth))
    return LineageNode(
        root_type, root_id, types.label(workspace, root_type, root_id), children=tuple(children)
    )


class _Walker:
    def __init__(self, ws: Workspace, types: NodeTypes, way: str) -> None:
        self.ws = ws
        self.types = types
        self.way = way
        self.seen: set[tuple[str, str]] = set()

    def neighbours(self, node_type: str, node_id: str) -> list[tuple[str, str, str]]:
        lineage = self.ws.store.lineage
        if self.way == UP:
            return [
                (e.source_type, e.source_id, e.relation)
                for e in lineage.edges_to(node_type, node_id)
            ]
        return [
            (e.target_type, e.target_id, e.relation) for e in lineage.edges_from(node_type, node_id)
        ]

    def children(self, node_type: str, node_id: str, depth: int) -> list[LineageNode]:
        self.seen.add((node_type, node_id))
        out: list[LineageNode] = []
        for child_type, child_id, relation in self.neighbours(node_type, node_id):
            node = LineageNode(
                child_type,
                child_id,
                self.types.label(self.ws, child_type, child_id),
                relation=relation,
                direction=self.way,
            )
            if (child_type, child_id) in self.seen:
                node = replace(node, repeated=True)
            elif depth <= 1:
                node = replace(node, truncated=bool(self.neighbours(child_type, child_id)))
            else:
                grand = self.children(child_type, child_id, depth - 1)
                node = replace(node, children=tuple(grand))
            out.append(node)
        return out


# -- built-in node types ---------------------------------------------------------------------


def _run_label(ws: Workspace, run_id: str) -> str:
    from datetime import UTC, datetime

    from modelyard.tracking.settings import TrackingSettings

    try:
        run = ws.store.runs.get(run_id)
    except (NotFound, InvalidReference):
        return f"run {run_id[:12]} (missing)"
    status = run.effective_status(datetime.now(UTC), TrackingSettings.of(ws).stale_after_s)
    name = f" {run.name}" if run.name else ""
    return f"run {run.id[:12]}{name} [{status}]"


def _run_resolve(ws: Workspace, text: str) -> str | None:
    candidate = text.strip().lower()
    if not 4 <= len(candidate) <= 32 or any(c not in "0123456789abcdef" for c in candidate):
        return None
    try:
        return ws.store.runs.resolve_id(candidate)
    except NotFound:
        return None


def _dataset_label(ws: Workspace, ref: str) -> str:
    from modelyard.hashing import short
    from modelyard.units import format_size

    name, _, version = ref.partition("@")
    try:
        dv = ws.store.datasets.get_version(name, int(version))
    except (NotFound, ValueError):
        return f"dataset {ref} (missing)"
    return f"dataset {dv.ref} {dv.format} {format_size(dv.size)} {short(dv.digest)}"


def _dataset_resolve(ws: Workspace, text: str) -> str | None:
    from modelyard.tracking.run import resolve_dataset_version

    try:
        return resolve_dataset_version(ws, text).ref
    except (NotFound, InvalidReference):
        return None


def _artifact_label(ws: Workspace, digest: str) -> str:
    from modelyard.hashing import short

    names = ws.store.runs.artifact_names(digest)
    shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
    return f"artifact {shown} {short(digest)}" if shown else f"artifact {short(digest)}"


def _artifact_resolve(ws: Workspace, text: str) -> str | None:
    from modelyard.hashing import is_digest

    digest = text.strip()
    if not is_digest(digest):
        return None
    if ws.store.lineage.edges_touching("artifact", digest) or ws.artifacts.exists(digest):
        return digest
    return None


RUN_NODE = NodeType("run", "run id", _run_label, _run_resolve)
DATASET_VERSION_NODE = NodeType(
    "dataset_version", "dataset version", _dataset_label, _dataset_resolve
)
ARTIFACT_NODE = NodeType("artifact", "artifact digest", _artifact_label, _artifact_resolve)
