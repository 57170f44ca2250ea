"""Monitoring policies: parsing (errors name the key), consecutive windows, labels, cooldowns,
webhook address checks, and the retrain lease on both store backends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from _hooks import Hooks
from _hooks import hook_server as serve_hooks
from modelyard.errors import ConfigError
from modelyard.monitor.actions import check_webhook_url, send_alert
from modelyard.monitor.policy import load_config, parse_condition, parse_duration
from modelyard.workspace import Workspace

GOOD = {
    "interval": "30s",
    "webhook_allow": ["10.0.0.0/8"],
    "policies": [
        {
            "name": "retrain-on-decay",
            "action": "retrain",
            "when": ["drift_share > 0.3 for 2 windows", "accuracy < 0.85 with 200 labels"],
            "cooldown": "6h",
            "margin": 0.01,
        },
        {"name": "page", "action": "alert", "when": ["latency_p99_ms > 50 ms", "down"]},
    ],
}


def test_a_good_config_parses() -> None:
    config = load_config(GOOD)
    assert config.interval_s == 30.0
    retrain, page = config.policies
    assert retrain.cooldown_s == 6 * 3600
    assert retrain.margin == 0.01
    drift, accuracy = retrain.conditions
    assert (drift.metric, drift.op, drift.threshold, drift.windows) == ("drift_share", ">", 0.3, 2)
    assert (accuracy.metric, accuracy.min_labels) == ("accuracy", 200)
    assert [c.metric for c in page.conditions] == ["latency_p99_ms", "up"]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"policies": [{"name": "p", "action": "nap", "when": "down"}]}, r"'p'.* action"),
        ({"policies": [{"name": "p", "action": "alert"}]}, r"'p'.* when must be"),
        (
            {"policies": [{"name": "p", "action": "alert", "when": ["drfit_share > 1"]}]},
            r"'p' when\[0\].*unknown metric 'drfit_share'",
        ),
        (
            {"policies": [{"name": "p", "action": "alert", "when": ["up", "accuracy < x"]}]},
            r"when\[0\] = 'up'",
        ),
        (
            {"policies": [{"name": "p", "action": "alert", "when": "accuracy < 0.8 soon"}]},
            r"cannot read 'soon'",
        ),
        (
            {"policies": [{"name": "p", "action": "alert", "when": "down", "cooldown": "x"}]},
            "cooldown",
        ),
        (
            {"policies": [{"name": "p", "action": "alert", "when": "down", "colldown": 1}]},
            "colldown",
        ),
        ({"polices": []}, r"\[monitor\]: unknown key\(s\) polices"),
        ({"allow_private_webhooks": "yes"}, "allow_private_webhooks"),
        (
            {"policies": [{"name": "p", "action": "alert", "when": "down"}] * 2},
            "used twice",
        ),
    ],
)
def test_bad_config_names_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(section)


def test_durations() -> None:
    assert parse_duration("90s", "x") == 90
    assert parse_duration("5m", "x") == 300
    assert parse_duration(2, "x") == 2
    with pytest.raises(ConfigError, match="x must be a duration"):
        parse_duration(True, "x")
    # Endless or overflowing durations are refused (a lease of inf seconds was a traceback).
    for endless in ("9" * 400 + "d", "2000000000d", float("inf"), float("nan"), 1e300):
        with pytest.raises(ConfigError, match="x must be at most 3650 days"):
            parse_duration(endless, "x")
    assert parse_duration("3650d", "x") == 3650 * 86400


def test_consecutive_windows() -> None:
    condition = parse_condition("drift_share > 0.3 for 2 windows")
    assert condition.check([{"drift_share": 0.5}]) is None  # only one window so far
    assert condition.check([{"drift_share": 0.5}, {"drift_share": 0.2}]) is None
    assert condition.check([{"drift_share": 0.2}, {"drift_share": 0.5}]) is None
    reason = condition.check([{"drift_share": 0.1}, {"drift_share": 0.4}, {"drift_share": 0.5}])
    assert reason == "drift_share > 0.3 for 2 windows in 2 consecutive windows (0.4, 0.5)"


def test_quality_needs_enough_labels() -> None:
    condition = parse_condition("accuracy < 0.85 with at least 200 labels")
    assert condition.check([{"accuracy": 0.5, "labels": 199}]) is None
    assert condition.check([{"accuracy": 0.5}]) is None
    assert condition.check([{"accuracy": 0.9, "labels": 500}]) is None
    assert condition.check([{"accuracy": 0.5, "labels": 200}]) is not None
    assert parse_condition("error_rate > 5%").threshold == 0.05


def test_a_policy_fires_when_any_condition_holds() -> None:
    page = load_config(GOOD).policies[1]
    assert page.check([{"latency_p99_ms": 20.0, "up": 1}]) == []
    assert page.check([{"latency_p99_ms": 20.0, "up": 0}]) == ["down (now 0)"]
    assert len(page.check([{"latency_p99_ms": 80.0, "up": 0}])) == 2


# --- webhooks -------------------------------------------------------------------------------


@pytest.fixture
def hook_server() -> Iterator[str]:
    with serve_hooks() as url:
        yield f"{url}/hook"


def test_webhook_to_loopback_is_refused_by_default(hook_server: str) -> None:
    result = send_alert({"policy": "page"}, hook_server)
    assert not result.sent
    assert result.error is not None
    assert "loopback address 127.0.0.1; refused" in result.error
    assert Hooks.received == []


@pytest.mark.parametrize("allow", [{"allow_private": True}, {"allow": ["127.0.0.0/8"]}])
def test_webhook_to_loopback_when_allowed(hook_server: str, allow: dict[str, Any]) -> None:
    body = {"policy": "page", "deployment": "churn-prod", "reasons": ["down (now 0)"]}
    result = send_alert(body, hook_server, **allow)
    assert result.sent
    assert result.status == 204
    assert Hooks.received == [body]


def test_link_local_metadata_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="link-local address 169.254.169.254"):
        check_webhook_url("http://169.254.169.254/latest/meta-data")


def test_every_resolved_address_is_checked() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.1.2.3"]

    with pytest.raises(ConfigError, match="private address 10.1.2.3"):
        check_webhook_url("https://hooks.example.com/x", resolver=resolver)
    target = check_webhook_url(
        "https://hooks.example.com/x?k=1", allow=["10.0.0.0/8"], resolver=resolver
    )
    assert (target.address, target.port, target.path) == ("93.184.216.34", 443, "/x?k=1")


def test_webhook_must_be_http() -> None:
    with pytest.raises(ConfigError, match="must be an http"):
        check_webhook_url("file:///etc/passwd")


# --- the lease ------------------------------------------------------------------------------


def test_lease_is_exclusive_until_released_or_expired(workspace: Workspace) -> None:
    repo = workspace.store.monitoring
    assert repo.acquire_lease("retrain:churn", "a", 60)
    assert not repo.acquire_lease("retrain:churn", "b", 60)
    assert repo.acquire_lease("retrain:churn", "a", 60)  # re-entrant for its holder
    assert not repo.release_lease("retrain:churn", "b")  # never someone else's
    assert repo.release_lease("retrain:churn", "a")
    assert repo.acquire_lease("retrain:churn", "b", -1)  # already expired
    assert repo.acquire_lease("retrain:churn", "c", 60)  # an expired lease can be taken over
    assert [lease.holder for lease in repo.leases()] == ["c"]


def test_two_racing_monitors_get_one_lease(workspace: Workspace) -> None:
    barrier = threading.Barrier(8)
    won: list[str] = []

    def contend(holder: str) -> None:
        ws = Workspace.at(workspace.root)
        try:
            ws.store  # noqa: B018 - connect before the race
            barrier.wait()
            if ws.store.monitoring.acquire_lease("retrain:churn", holder, 60):
                won.append(holder)
        finally:
            ws.close()

    threads = [threading.Thread(target=contend, args=(f"m{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_webhook_secrets_in_the_path_never_reach_errors_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Slack-style hooks keep their secret in the path (found in review)."""
    from modelyard.errors import ConfigError
    from modelyard.monitor.actions import check_webhook_url, send_alert

    secret = "T000/B000/XXXXcanarysecretXXXX"
    with pytest.raises(ConfigError) as info:
        check_webhook_url(f"ftp://hooks.example.com/services/{secret}")
    assert secret not in str(info.value)
    with caplog.at_level("DEBUG"):
        result = send_alert(
            {"policy": "p"}, f"http://127.0.0.1:9/services/{secret}", allow_private=True
        )
    assert not result.sent
    assert "webhook" in caplog.text
    assert secret not in caplog.text
