"""Where chunks are scored: in this process, or spread over a Ray cluster.

An engine takes a :class:`ScoringJob` and yields the result record batches **in input order**;
the caller writes them. Both engines score with the same
:class:`~modelyard.serving.batch.ChunkScorer`, so validation and outputs cannot differ.

Ray: one actor per worker CPU (or ``workers``) loads the model once, from the model folder's
files shipped through the object store (so a remote cluster needs no shared disk); chunks are
dealt out round-robin with a bounded number in flight per actor, which keeps the driver's memory
at a few chunks however large the table is.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidParameter

if TYPE_CHECKING:
    import pyarrow as pa

    from modelyard.data.formats import TableSource

LOCAL = "local"
RAY = "ray"
ENGINES = (LOCAL, RAY)
IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True)
class ScoringJob:
    model_dir: Path
    allow_pickle: bool
    sources: tuple[TableSource, ...]
    schema: pa.Schema | None
    carry: tuple[str, ...]
    batch_rows: int


def input_chunks(job: ScoringJob) -> Iterator[pa.RecordBatch]:
    """The table's rows in chunks of ``job.batch_rows``, streamed from the verified blobs."""
    from modelyard.data.formats import stream
    from modelyard.serving.batch import rechunk

    return rechunk(stream(job.sources, job.schema, job.batch_rows), job.batch_rows)


def score_local(job: ScoringJob) -> Iterator[pa.RecordBatch]:
    from modelyard.flavors import load_model
    from modelyard.serving.batch import ChunkScorer

    model = load_model(job.model_dir, allow_pickle=job.allow_pickle)
    scorer = ChunkScorer(model, carry=job.carry, max_rows=job.batch_rows)
    yield from scorer.score_all(input_chunks(job))


class _RayScorer:
    """A Ray actor's state: the model, loaded once from shipped files."""

    def __init__(
        self, files: dict[str, bytes], allow_pickle: bool, carry: tuple[str, ...], rows: int
    ) -> None:
        from modelyard.flavors import load_model
        from modelyard.serving.batch import ChunkScorer

        self.folder = Path(tempfile.mkdtemp(prefix="modelyard-batch-model-"))
        for rel, data in files.items():
            target = self.folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        model = load_model(self.folder, allow_pickle=allow_pickle)
        self.scorer = ChunkScorer(model, carry=carry, max_rows=rows)

    def score(self, batch: pa.RecordBatch, first_row: int) -> pa.RecordBatch:
        return self.scorer.score(batch, first_row)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _model_files(folder: Path) -> dict[str, bytes]:
    from modelyard.artifacts.manifest import walk_files

    return {rel: path.read_bytes() for rel, path, _ in walk_files(folder)}


def score_ray(
    job: ScoringJob, *, address: str | None = None, workers: int | None = None
) -> Iterator[pa.RecordBatch]:
    """Score on the Ray cluster at ``address`` (default: the one this process is connected to,
    else a local one started for this job and stopped after it)."""
    try:
        import ray
    except ImportError:
        raise InvalidParameter("--engine ray needs Ray: pip install 'modelyard[ray]'") from None
    from modelyard.errors import InvalidInput, ModelyardError

    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        started = True
    actors: list[Any] = []
    try:
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]
        files = ray.put(_model_files(job.model_dir))
        actor_class = ray.remote(num_cpus=1)(_RayScorer)
        actors = [
            actor_class.remote(files, job.allow_pickle, job.carry, job.batch_rows)
            for _ in range(count)
        ]
        pending: collections.deque[Any] = collections.deque()

        def take() -> pa.RecordBatch:
            try:
                return ray.get(pending.popleft())
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)  # the worker's own exception
                if isinstance(cause, InvalidInput):
                    raise InvalidInput(cause.message, cause.field) from None
                if isinstance(cause, ModelyardError):
                    raise ModelyardError(cause.message) from None
                raise

        first_row = 0
        for index, chunk in enumerate(input_chunks(job)):
            actor = actors[index % count]
            pending.append(actor.score.remote(chunk, first_row))
            first_row += chunk.num_rows
            if len(pending) >= count * IN_FLIGHT_PER_WORKER:
                yield take()
        while pending:
            yield take()
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.get(actor.close.remote())
                ray.kill(actor)
        if started:
            ray.shutdown()


Engine = Callable[[ScoringJob], Iterator["pa.RecordBatch"]]


def engine(name: str, *, address: str | None = None, workers: int | None = None) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``)."""
    if name == LOCAL:
        if address is not None:
            raise InvalidParameter("--address is for --engine ray")
        return score_local
    if name == RAY:
        return lambda job: score_ray(job, address=address, workers=workers)
    raise InvalidParameter(f"unknown engine {name!r} (expected one of {', '.join(ENGINES)})")
