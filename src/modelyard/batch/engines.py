"""Where chunks are scored: in this process, or spread over a Ray cluster.

An engine takes a :class:`ScoringJob` and gives a context manager: entering it loads the model
(and starts a cluster when needed), its value yields the result record batches **in input
order**, which the caller writes. Both engines score with the same
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


@contextlib.contextmanager
def score_local(job: ScoringJob) -> Iterator[Iterator[pa.RecordBatch]]:
    """The model loaded in this process; the chunks are read one ahead by a thread of their
    own (:func:`~modelyard.serving.batch.prefetch`), so reading overlaps scoring."""
    from modelyard.flavors import load_model
    from modelyard.serving.batch import ChunkScorer, prefetch

    model = load_model(job.model_dir, allow_pickle=job.allow_pickle)
    scorer = ChunkScorer(model, carry=job.carry, max_rows=job.batch_rows)
    chunks = prefetch(input_chunks(job))
    try:
        yield scorer.score_all(chunks)
    finally:
        chunks.close()


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

    def ready(self) -> bool:
        return True

    def score(self, batch: pa.RecordBatch, first_row: int) -> pa.RecordBatch:
        return self.scorer.score(batch, first_row)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _model_files(folder: Path) -> dict[str, bytes]:
    from modelyard.artifacts.manifest import walk_files

    return {rel: path.read_bytes() for rel, path, _ in walk_files(folder)}


LOOPBACK = "127.0.0.1"
# Ray replaces a loopback node address by the host's own (``resolve_ip_for_localhost``) unless
# "clusters" are off, as on a laptop; its servers then bind that address. Off for the start of
# a job's own cluster, so every process binds loopback; usage stats are never sent.
_LOCAL_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def start_local_ray(num_cpus: int | None = None) -> None:
    """A Ray cluster on this machine for one job, reachable from this machine only: every Ray
    process binds loopback addresses (by default Ray binds the host's own interface address),
    and no dashboard is served. Ray's processes inherit the settings while they start; this
    process gets its own back afterwards, so a later ``ray.init(address=...)`` to a real
    cluster still announces this machine's address."""
    import os

    import ray
    from ray._private import ray_constants

    saved_env = {key: os.environ.get(key) for key in _LOCAL_ONLY_ENV}
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(_LOCAL_ONLY_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False  # read when ray.init resolves the node address
    try:
        ray.init(
            num_cpus=num_cpus,
            _node_ip_address=LOOPBACK,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def score_ray(
    job: ScoringJob, *, address: str | None = None, workers: int | None = None
) -> Iterator[Iterator[pa.RecordBatch]]:
    """Score on the Ray cluster at ``address`` (default: the one this process is connected to,
    else a local one started for this job, on loopback only, and stopped after it). Entering
    waits until every actor has loaded the model."""
    try:
        import ray
    except ImportError:
        raise InvalidParameter("--engine ray needs Ray: pip install 'modelyard[ray]'") from None

    started = False
    if not ray.is_initialized():
        if address is None:
            start_local_ray()
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
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
        _ray_get(ray, [actor.ready.remote() for actor in actors])
        yield _ray_results(ray, job, actors)
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.get(actor.close.remote())
                ray.kill(actor)
        if started:
            ray.shutdown()


def _ray_get(ray: Any, ref: Any) -> Any:
    """``ray.get``, with a worker's modelyard error raised as itself (one clear line)."""
    from modelyard.errors import InvalidInput, ModelyardError

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)  # the worker's own exception
        if isinstance(cause, InvalidInput):
            raise InvalidInput(cause.message, cause.field) from None
        if isinstance(cause, ModelyardError):
            raise ModelyardError(cause.message) from None
        raise


def _ray_results(ray: Any, job: ScoringJob, actors: list[Any]) -> Iterator[pa.RecordBatch]:
    """Chunks dealt round-robin, ``IN_FLIGHT_PER_WORKER`` per actor; results in input order."""
    from modelyard.serving.batch import prefetch

    count = len(actors)
    pending: collections.deque[Any] = collections.deque()
    first_row = 0
    with contextlib.closing(prefetch(input_chunks(job))) as chunks:
        for index, chunk in enumerate(chunks):
            actor = actors[index % count]
            pending.append(actor.score.remote(chunk, first_row))
            first_row += chunk.num_rows
            if len(pending) >= count * IN_FLIGHT_PER_WORKER:
                yield _ray_get(ray, pending.popleft())
    while pending:
        yield _ray_get(ray, pending.popleft())


Engine = Callable[[ScoringJob], contextlib.AbstractContextManager[Iterator["pa.RecordBatch"]]]
"""Entering an engine loads the model (and starts what it needs); the value is the iterator
of result batches in input order; leaving releases everything."""


def engine(name: str, *, address: str | None = None, workers: int | None = None) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``)."""
    if name == LOCAL:
        if address is not None:
            raise InvalidParameter("--address is for --engine ray")
        return score_local
    if name == RAY:
        return lambda job: score_ray(job, address=address, workers=workers)
    raise InvalidParameter(f"unknown engine {name!r} (expected one of {', '.join(ENGINES)})")
