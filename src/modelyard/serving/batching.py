"""Adaptive micro-batching: requests that arrive while the model is busy share one predict call.

There is no fixed tick. The batcher takes everything queued (up to ``max_rows``), runs predict,
and meanwhile new requests queue up; so a lone request is answered at once and a burst is
answered in a few large calls. ``max_wait_s`` optionally holds a batch open a little longer.
Slow models run in a worker thread so the event loop keeps accepting (and queueing) requests
while the model computes; fast ones run inline, where a thread hop would cost more than it
saves. If a combined call fails, each request is retried alone so one bad request cannot fail
its neighbours.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from modelyard.serving.decode import Batch

Output = Any  # ndarray or dict[str, ndarray], one entry per row


def concat(batches: list[Batch]) -> Any:
    if len(batches) == 1:
        return batches[0].data
    blocks = {b.columns is not None for b in batches}
    # Blocks of named columns and columns decoded one by one do not stack: all as columns.
    datas = [b.as_columns() for b in batches] if len(blocks) > 1 else [b.data for b in batches]
    first = datas[0]
    if isinstance(first, dict):
        return {k: np.concatenate([d[k] for d in datas]) for k in first}
    return np.concatenate(datas)  # type: ignore[arg-type]


def split(output: Output, sizes: list[int]) -> list[Output]:
    parts = []
    start = 0
    for size in sizes:
        end = start + size
        if isinstance(output, dict):
            parts.append({k: v[start:end] for k, v in output.items()})
        else:
            parts.append(output[start:end])
        start = end
    return parts


class Batcher:
    def __init__(
        self,
        predict: Callable[[Any], Output],
        *,
        max_rows: int,
        max_wait_s: float,
        in_thread: bool,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._predict = predict
        self._max_rows = max_rows
        self._max_wait = max_wait_s
        self.in_thread = in_thread
        self._on_batch = on_batch
        self._pending: collections.deque[tuple[Batch, asyncio.Future[Output]]] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def submit(self, batch: Batch) -> Output:
        future: asyncio.Future[Output] = asyncio.get_running_loop().create_future()
        self._pending.append((batch, future))
        self._wake.set()
        return await future

    async def _call(self, data: Any) -> Output:
        if self.in_thread:
            return await asyncio.get_running_loop().run_in_executor(None, self._predict, data)
        return self._predict(data)

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            if self._max_wait > 0 and sum(b.rows for b, _ in self._pending) < self._max_rows:
                await asyncio.sleep(self._max_wait)
            items = [self._pending.popleft()]
            rows = items[0][0].rows
            while self._pending and rows + self._pending[0][0].rows <= self._max_rows:
                item = self._pending.popleft()
                items.append(item)
                rows += item[0].rows
            items = [(b, f) for b, f in items if not f.done()]  # cancelled by a gone client
            if not items:
                continue
            if self._on_batch is not None:
                self._on_batch(rows, len(items))
            try:
                output = await self._call(concat([b for b, _ in items]))
                parts = split(output, [b.rows for b, _ in items])
            except Exception as exc:
                if len(items) == 1:
                    _settle(items[0][1], exc=exc)
                    continue
                for batch, future in items:
                    try:
                        _settle(future, result=await self._call(batch.data))
                    except Exception as single_exc:
                        _settle(future, exc=single_exc)
                continue
            for (_, future), part in zip(items, parts, strict=True):
                _settle(future, result=part)


def _settle(
    future: asyncio.Future[Output], *, result: Any = None, exc: BaseException | None = None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
