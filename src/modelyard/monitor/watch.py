"""``monitor watch``: check every watched deployment, sleep, repeat, until asked to stop.

SIGTERM and the first Ctrl-C only *ask*: the loop finishes the step it is in (a retrain stops
before its next step, having changed nothing that serves) and returns, so no lease is left held
and no record is left half-written. A second Ctrl-C interrupts at once; the lease is released
on the way out all the same.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from modelyard.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.monitor.check import CheckResult, Gatherer
    from modelyard.monitor.policy import MonitorConfig
    from modelyard.monitor.retrain import RetrainPlan
    from modelyard.workspace import Workspace

logger = logging.getLogger("modelyard.monitor")


def watch(
    ws: Workspace,
    *,
    interval: float | None = None,
    deployments: tuple[str, ...] = (),
    config: MonitorConfig | None = None,
    stop: threading.Event | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
    on_error: Callable[[str, ModelyardError], None] | None = None,
    gather: Gatherer | None = None,
    retrain_plan: RetrainPlan | None = None,
    max_passes: int | None = None,
) -> int:
    """Loop until ``stop`` is set (or ``max_passes`` passes ran); returns the passes run.

    A deployment whose check fails is reported to ``on_error`` and the loop goes on: one
    broken deployment must not blind the monitor to the others.
    """
    from modelyard.monitor.check import check_deployment, new_holder
    from modelyard.monitor.policy import load_config
    from modelyard.monitor.retrain import RetrainPlan

    config = config if config is not None else load_config(ws.settings.section("monitor"))
    wait = config.interval_s if interval is None else interval
    stop = stop or threading.Event()
    plan = replace(retrain_plan or RetrainPlan(), stop=stop)
    holder = new_holder()
    passes = 0
    while not stop.is_set() and (max_passes is None or passes < max_passes):
        names = deployments or config.deployments or _served(ws)
        for name in names:
            if stop.is_set():
                break
            try:
                result = check_deployment(
                    ws, name, config=config, gather=gather, retrain_plan=plan, holder=holder
                )
            except ModelyardError as exc:
                logger.error("monitor check of %s failed: %s", name, exc.message)
                if on_error is not None:
                    on_error(name, exc)
                continue
            except Exception as exc:  # a long-running loop outlives one bad pass
                logger.exception("monitor check of %s crashed", name)
                if on_error is not None:
                    on_error(name, ModelyardError(f"{type(exc).__name__}: {exc}"))
                continue
            if on_result is not None:
                on_result(result)
        passes += 1
        if max_passes is not None and passes >= max_passes:
            break
        stop.wait(wait)
    return passes


def _served(ws: Workspace) -> tuple[str, ...]:
    """Deployments serving a version now (a stopped one is not down, it is off)."""
    from modelyard.store.deploy_entities import STOPPED

    return tuple(
        d.name for d in ws.store.deployments.all() if d.current is not None and d.status != STOPPED
    )


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """While inside, SIGTERM and the first SIGINT set ``stop``; a second SIGINT raises
    KeyboardInterrupt as usual. Handlers are restored on the way out (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def ask(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        logger.warning("stopping after the current step (signal %d)", signum)
        stop.set()

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["stop_on_signals", "watch"]
