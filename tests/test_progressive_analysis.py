"""The analysis of a progressive rollout's step, the split file servers read, the proxy's
weights and the policy's rollout settings, on inputs built here."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from modelyard.deploy.proxy import render_haproxy_config
from modelyard.deploy.target import TrafficSplit
from modelyard.errors import ConfigError, InvalidParameter
from modelyard.monitor.analysis import Counts, Thresholds, analyse
from modelyard.monitor.policy import load_config
from modelyard.monitor.progressive import RolloutPlan, canary_steps, parse_steps, shadow_step
from modelyard.serving.predlog import FEEDBACK, PREDICTIONS, SegmentLog, read_predictions
from modelyard.serving.variants import Split, parse_split, variant_of


def _log(folder: Path, kind: str) -> SegmentLog:
    log = SegmentLog(folder, kind, segment_bytes=1 << 20, segment_seconds=60)
    log.start()
    return log


def _write(folder: Path, records: list[tuple[object, ...]], labels: dict[str, int]) -> None:
    preds, feedback = _log(folder, PREDICTIONS), _log(folder, FEEDBACK)
    preds.put_many(records)
    feedback.put_many([(rid, time.time_ns(), "m", "1", y) for rid, y in labels.items()])
    preds.close()
    feedback.close()


def _window(tmp_path: Path, candidate: list[int], latency_s: float, mode: str = "shadow"):
    now = time.time_ns()
    records: list[tuple[object, ...]] = []
    for i, y in enumerate(candidate):
        rid = f"r{i}"
        records.append((rid, now, "m", "1", "v2", [[i]], [1], 0.002, 1, "primary"))
        records.append((rid, now, "m", "2", "v2", [[i]], [y], latency_s, 1, mode))
    _write(tmp_path, records, {f"r{i}": 1 for i in range(len(candidate))})
    return analyse(
        tmp_path,
        mode=mode,
        primary_version="1",
        candidate_version="2",
        since=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
        counts=Counts(),
        thresholds=Thresholds(min_requests=10, min_labels=20),
    )


def test_a_candidate_answering_alike_passes_every_check(tmp_path: Path) -> None:
    result = _window(tmp_path, [1] * 40, 0.002)
    assert result.passed, result
    by = {r.check: r for r in result.results}
    assert by["agreement"].candidate == 1.0
    assert by["prediction distance"].candidate == 0.0
    assert by["quality (accuracy)"].candidate == by["quality (accuracy)"].primary == 1.0
    assert by["requests"].candidate == 40


def test_disagreement_distance_quality_and_latency_fail(tmp_path: Path) -> None:
    result = _window(tmp_path, [0] * 30 + [1] * 10, 0.080)
    failed = {r.check for r in result.results if r.passed is False}
    assert failed == {"agreement", "prediction distance", "quality (accuracy)", "p99 latency ms"}
    assert any("agreement: 25.0% of 40 rows answered alike" in t for t in result.failed_texts())


def test_a_client_reusing_request_ids_cannot_fail_the_agreement(tmp_path: Path) -> None:
    """Requests sharing one client-chosen x-request-id are not paired with each other's
    answers (every one of them answered alike by both versions)."""
    now = time.time_ns()
    records: list[tuple[object, ...]] = []
    for i in range(40):
        rid = f"r{i}" if i < 20 else "same"
        records.append((rid, now, "m", "1", "v2", [[i]], [i], 0.002, 1, "primary"))
        records.append((rid, now, "m", "2", "v2", [[i]], [i], 0.002, 1, "shadow"))
    _write(tmp_path, records, {})
    result = analyse(
        tmp_path,
        mode="shadow",
        primary_version="1",
        candidate_version="2",
        since=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
        counts=Counts(),
        thresholds=Thresholds(min_requests=10),
    )
    by = {r.check: r for r in result.results}
    assert by["agreement"].candidate == 1.0, by["agreement"]
    assert "of 20 rows" in by["agreement"].detail


def test_errors_and_faults_fail_and_too_few_requests_give_no_pass(tmp_path: Path) -> None:
    now = time.time_ns()
    records = [(f"r{i}", now, "m", "2", "v2", [[i]], [1], 0.002, 1, "canary") for i in range(5)]
    _write(tmp_path, records, {})
    result = analyse(
        tmp_path,
        mode="canary",
        primary_version="1",
        candidate_version="2",
        since=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
        counts=Counts(candidate_errors=1, unreachable=1),
        thresholds=Thresholds(min_requests=10),
        fault="candidate x crashed and restarted 1 time(s)",
    )
    failed = {r.check for r in result.results if r.passed is False}
    assert failed == {"candidate health", "requests", "error rate"}
    assert "agreement" not in {r.check for r in result.results}  # a canary has no pairs


def test_old_segments_read_as_the_serving_version(tmp_path: Path) -> None:
    log = _log(tmp_path, PREDICTIONS)
    log.put(("r1", 1, "m", "1", "v2", [[1]], [1], 0.001, 1))  # a 9-field record: primary
    log.close()
    assert read_predictions(tmp_path).column("variant").to_pylist() == ["primary"]


def test_counts_survive_a_counter_reset() -> None:
    assert Counts(5, 2, 1).since(Counts(3, 7, 0)) == Counts(2, 2, 1)


def test_thresholds_from_config_and_overrides() -> None:
    t = Thresholds().override({"max_error_rate_increase": "0.05", "min_requests": 3}, "--check")
    assert t.max_error_rate_increase == 0.05
    assert t.min_requests == 3
    with pytest.raises(ConfigError, match="unknown analysis threshold 'nope'"):
        Thresholds().override({"nope": 1}, "--check")
    with pytest.raises(ConfigError, match="must be a number"):
        Thresholds().override({"min_agreement": "high"}, "[deploy.analysis]")
    with pytest.raises(ConfigError, match="must be >= 0"):
        Thresholds().override({"min_agreement": -1}, "[deploy.analysis]")
    for key, value in (("max_error_rate_increase", "nan"), ("min_requests", "inf")):
        with pytest.raises(ConfigError, match=f"{key} must be a finite number"):
            Thresholds().override({key: value}, "--check")


def test_split_files_and_variants() -> None:
    split = parse_split(
        {"mode": "canary", "percent": 50, "candidates": ["http://127.0.0.1:9"], "sticky": "X-U"}
    )
    assert split == Split("canary", 50.0, (("127.0.0.1", 9),), b"x-u")
    same = {split.chooses({b"x-u": b"alice"}) for _ in range(20)}
    assert len(same) == 1  # sticky: one client, one variant
    assert parse_split({"mode": "off"}) is None
    for bad in (
        {"mode": "mirror", "percent": 1, "candidates": ["http://a:1"]},
        {"mode": "shadow", "percent": 101, "candidates": ["http://a:1"]},
        {"mode": "shadow", "percent": 5, "candidates": ["file:///etc/passwd"]},
        {"mode": "shadow", "percent": 5, "candidates": []},
    ):
        with pytest.raises(ValueError, match="must be"):
            parse_split(bad)
    assert variant_of({b"x-modelyard-variant": b"shadow"}, "canary") == "shadow"
    assert variant_of({b"x-modelyard-variant": b"shadow"}, "primary") == "primary"


def test_a_split_file_replaced_within_one_clock_tick_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from modelyard.serving import variants

    monkeypatch.setattr(variants, "POLL_S", 0.0)
    path = tmp_path / "split.json"
    path.write_text('{"mode": "canary", "percent": 25, "candidates": ["http://a:1"]}')
    stamp = os.stat(path).st_mtime_ns
    split_file = variants.SplitFile(path)
    assert split_file.current() == Split("canary", 25.0, (("a", 1),))
    new = tmp_path / "split.tmp"  # written as the rollout writes it: a new file, renamed
    new.write_text('{"mode": "canary", "percent": 50, "candidates": ["http://a:1"]}')
    os.utime(new, ns=(stamp, stamp))  # same size, same modification time
    new.replace(path)
    assert split_file.current() == Split("canary", 50.0, (("a", 1),))


def test_mirrors_to_a_hanging_shadow_hold_bounded_memory(tmp_path: Path) -> None:
    """A shadow that reads nothing: each mirror keeps its body until it times out. Large
    bodies are dropped once the mirrors in flight hold MAX_MIRROR_BYTES (a count alone let 64
    bodies of 8 MiB pile up), and every client is answered by the serving version at once."""
    import asyncio
    import json

    from modelyard.serving import variants

    outcomes: list[tuple[str, str]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        headers = [(b"x-request-id", b"r"), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"[1]"})

    async def main() -> tuple[list[int], int]:
        hang = asyncio.Event()
        accepted: list[Any] = []

        async def never_answers(reader: Any, writer: Any) -> None:
            accepted.append(writer)
            await hang.wait()

        server = await asyncio.start_server(never_answers, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        split = tmp_path / "split.json"
        split.write_text(json.dumps(
            {"mode": "shadow", "percent": 100, "candidates": [f"http://127.0.0.1:{port}"]}
        ))  # fmt: skip
        body = b"x" * (4 << 20)
        router = variants.VariantRouter(app, split, 8 << 20, lambda v, o: outcomes.append((v, o)))
        statuses = []
        for _ in range(20):
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any], sent: list[Any] = sent) -> None:
                sent.append(message)

            scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": []}
            await asyncio.wait_for(router(scope, receive, send), 5)
            statuses.append(sent[0]["status"])
            await asyncio.sleep(0)  # let the mirror start
        in_flight = router._mirror_bytes
        for task in list(router._mirrors):
            task.cancel()
        await asyncio.gather(*router._mirrors, return_exceptions=True)
        hang.set()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
        return statuses, in_flight

    statuses, in_flight = asyncio.run(main())
    assert statuses == [200] * 20
    assert in_flight <= variants.MAX_MIRROR_BYTES
    assert outcomes.count(("shadow", "dropped")) == 20 - variants.MAX_MIRROR_BYTES // (4 << 20)


@pytest.mark.parametrize(
    "answer",
    [b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nx: " + b"y" * 100_000 + b"\r\n\r\n"],
    ids=["not-http", "overlong-head"],
)
def test_a_canary_answering_garbage_falls_back_to_the_serving_version(
    tmp_path: Path, answer: bytes
) -> None:
    import asyncio
    import json

    from modelyard.serving import variants

    outcomes: list[tuple[str, str]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[1]"})

    async def main() -> list[dict[str, Any]]:
        async def garbage(reader: Any, writer: Any) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        split = tmp_path / "split.json"
        split.write_text(json.dumps(
            {"mode": "canary", "percent": 100, "candidates": [f"http://127.0.0.1:{port}"]}
        ))  # fmt: skip
        router = variants.VariantRouter(app, split, 1 << 20, lambda v, o: outcomes.append((v, o)))
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"[[1]]", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": []}
        await asyncio.wait_for(router(scope, receive, send), 5)
        server.close()
        await server.wait_closed()
        return sent

    sent = asyncio.run(main())
    assert sent[0]["status"] == 200  # this server's own answer
    assert sent[1]["body"] == b"[1]"
    assert outcomes == [("canary", "unreachable")]


def test_haproxy_weights_and_sticky_hashing() -> None:
    text = render_haproxy_config(["a", "b"], candidates=["c"], candidate_percent=25, sticky="x-u")
    assert "  server r1 a:8080 check inter 1s fall 2 rise 1 weight 96" in text
    assert "  server c1 c:8080 check inter 1s fall 2 rise 1 weight 64" in text
    assert "  balance hdr(x-u)\n  hash-type consistent" in text
    assert "http-request del-header x-modelyard-variant" in text
    plain = render_haproxy_config(["a"])
    assert "weight" not in plain
    assert "balance roundrobin" in plain
    with pytest.raises(ValueError, match="not a header name"):
        render_haproxy_config(["a"], candidates=["c"], candidate_percent=5, sticky="x\nbad")


def test_steps_and_splits_are_checked() -> None:
    assert [s.percent for s in canary_steps(parse_steps("5,25,50,100"), 60)] == [5, 25, 50, 100]
    assert shadow_step(0.2, 30).percent == 20
    with pytest.raises(InvalidParameter, match="must grow"):
        canary_steps([50, 25], 60)
    with pytest.raises(InvalidParameter):
        parse_steps("5,lots")
    with pytest.raises(InvalidParameter):
        shadow_step(0, 30)
    with pytest.raises(InvalidParameter, match="header name"):
        TrafficSplit("canary", 5, sticky="x u")
    # A bad sticky header is refused with the plan, before a candidate starts (it was refused
    # only at the first step, after the candidate had started and the rollout was recorded).
    with pytest.raises(InvalidParameter, match="header name"):
        RolloutPlan(canary_steps([5, 100], 60), sticky="x\nbad")


def test_retrain_policies_take_a_rollout() -> None:
    config = load_config(
        {
            "policies": [
                {
                    "name": "p",
                    "action": "retrain",
                    "when": "drift_share > 0.3",
                    "rollout": "shadow,canary",
                    "shadow_for": "20s",
                    "canary_steps": [10, 100],
                    "canary_interval": "5s",
                    "sticky": "x-user",
                }
            ]
        }
    )
    (policy,) = config.policies
    assert policy.rollout == ("shadow", "canary")
    assert (policy.shadow_for_s, policy.canary_steps, policy.canary_interval_s) == (
        20,
        (10, 100),
        5,
    )
    for bad in ({"rollout": "canary,shadow"}, {"canary_steps": [50, 10]}, {"sticky": "a b"}):
        with pytest.raises(ConfigError):
            load_config({"policies": [{"name": "p", "action": "retrain", "when": "down", **bad}]})
