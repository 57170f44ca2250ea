"""The dashboard in a real browser: Playwright drives Debian's chromium against ``modelyard
server`` started on a free loopback port over a workspace built like the maintenance demo. It
signs in with a token, follows the lineage from the production deployment to its training
dataset by clicking, checks the drift page names the drifted feature, and saves screenshots
to ``test-artifacts/dashboard/``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import require_service
from modelyard.workspace import Workspace

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "dashboard"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(sqlite_workspace: Workspace) -> Iterator[tuple[str, Workspace, Any]]:
    """``modelyard server`` as users start it, on a free loopback port, with auth on."""
    import httpx

    from test_ui_api import build_world

    ws = sqlite_workspace
    world = build_world(ws)
    port = _free_port()
    exe = Path(sys.executable).parent / "modelyard"
    proc = subprocess.Popen(
        [str(exe), "server", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ws.root,
        env={k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"modelyard server did not start: {out[-2000:]}")
            time.sleep(0.1)  # polling with a deadline, not synchronisation by sleep
        yield url, ws, world
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@contextmanager
def _chromium_page(url: str) -> Iterator[Any]:
    """A Playwright page in Debian's chromium on the dashboard's sign-in page; the test fails
    on any uncaught script error in the page."""
    require_service(CHROMIUM.exists(), f"chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service(False, "playwright is not installed (pip install -e '.[dev]')")
        raise
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/")
            yield page
        finally:
            browser.close()
    assert errors == [], errors


def test_follow_lineage_and_see_drift_in_chromium(server: tuple[str, Workspace, Any]) -> None:
    url, ws, world = server
    _, secret = ws.store.tokens.create("dashboard-viewer", "read")
    with _chromium_page(url) as page:
        from playwright.sync_api import expect  # after _chromium_page's check that it is there

        # Sign in: a wrong token is refused, the real one opens the runs page.
        page.fill("input[name=token]", "not-a-token")
        page.click("text=open dashboard")
        expect(page.locator(".token .error")).to_contain_text("refused")
        page.fill("input[name=token]", secret)
        page.click("text=open dashboard")
        runs = page.get_by_test_id("runs-table")
        expect(runs).to_contain_text("register")
        assert page.evaluate("sessionStorage.getItem('modelyard.token')") == secret
        page.screenshot(path=str(ARTIFACTS / "01-runs.png"), full_page=True)

        # Compare the two newest runs.
        page.locator("[data-testid=runs-table] tbody input[type=checkbox]").nth(0).check()
        page.locator("[data-testid=runs-table] tbody input[type=checkbox]").nth(1).check()
        page.click("text=compare 2")
        expect(page.get_by_test_id("compare-table")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "02-compare.png"), full_page=True)

        # The registry shows the production alias and its history.
        page.click("header >> text=Registry")
        page.click("text=maintenance")
        expect(page.get_by_test_id("alias-history")).to_contain_text("production")
        page.screenshot(path=str(ARTIFACTS / "03-model.png"), full_page=True)

        # From the production deployment, click through the lineage to the training data.
        page.click("header >> text=Deployments")
        expect(page.get_by_test_id("deployments")).to_contain_text(world.model_ref)
        page.screenshot(path=str(ARTIFACTS / "04-deployments.png"), full_page=True)
        page.click(f"[data-testid=lineage-{world.deployment}]")
        model_node = page.locator(f'[data-node="model_version:{world.model_ref}"]')
        expect(model_node).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "05-lineage-deployment.png"), full_page=True)
        model_node.click()
        focus = page.get_by_test_id("lineage-focus")
        expect(focus).to_contain_text(f"model {world.model_ref}")
        dataset_node = page.locator(f'[data-node="dataset_version:{world.train_dataset}"]')
        dataset_node.click()
        expect(focus).to_contain_text(f"dataset {world.train_dataset}")
        # …and the graph centred on the data reaches the deployment again (downstream).
        expect(page.locator(f'[data-node="deployment:{world.deployment}"]')).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "06-lineage-dataset.png"), full_page=True)
        page.get_by_test_id("open-page").click()
        expect(page.get_by_test_id("dataset-version")).to_contain_text(world.train_dataset)
        expect(page.get_by_test_id("profile")).to_contain_text("vibration_mm_s")
        page.screenshot(path=str(ARTIFACTS / "07-dataset.png"), full_page=True)

        # The drift page names the drifted feature, and only that one.
        page.click("header >> text=Monitoring")
        drifted = page.get_by_test_id("drifted-features")
        expect(drifted).to_contain_text("vibration_mm_s")
        assert page.locator(".drifted-feature").all_inner_texts() == ["vibration_mm_s"]
        row = page.locator('[data-testid=drift-table] tr[data-feature="vibration_mm_s"]')
        expect(row.locator("td.drift")).to_have_count(1)
        expect(page.get_by_test_id("actions")).to_contain_text("champion_kept")
        page.screenshot(path=str(ARTIFACTS / "08-monitoring.png"), full_page=True)


def _shown(value: float) -> str:
    """A number as the dashboard's ``num`` prints it (4 significant digits, integers bare)."""
    text = repr(float(f"{value:.4g}"))
    return text.removesuffix(".0")


def _open_and_check(page: Any, url: str) -> None:
    """A link resolves: no ``undefined`` in it, and its page shows content, not an error."""
    assert "undefined" not in url, url
    page.goto(url)
    page.wait_for_selector("main section")
    errors = page.locator("main .error").all_inner_texts()
    assert errors == [], f"{url}: {errors}"


def test_every_page_shows_its_numbers_and_links_resolve(
    server: tuple[str, Workspace, Any],
) -> None:
    """The holes a user saw on main: the model page without version numbers and lineage links
    to ``undefined``, dataset versions with "— rows", a monitoring banner naming features that
    drifted only in older reports, a long tag widening the run page, single-value metrics drawn
    as one dot on a 0–100 axis."""
    from datetime import UTC, datetime

    from modelyard.models.provenance import provenance
    from test_ui_api import DEPLOYMENT, DRIFTED, _drift_doc

    url, ws, world = server
    _, secret = ws.store.tokens.create("dashboard-viewer", "read")
    rows = (ws.store.datasets.get_version("sensors", 1).profile or {})["row_count"]
    assert rows > 0
    # A newer report in which nothing drifted: the banner must follow it, not the older one.
    (newest,) = ws.store.monitoring.reports(DEPLOYMENT, limit=1)
    features = [f["name"] for f in newest.details["drift"][0]["features"]]
    ws.store.monitoring.add_report(
        DEPLOYMENT,
        model_name="maintenance",
        model_version=1,
        window_end=datetime.now(UTC),
        metrics={"latest": {"requests": 200.0}},
        details={"drift": [_drift_doc(False, features)]},
    )
    steps = ws.store.runs.search(parent_id=world.pipeline_run, limit=50)
    evaluate = next(r for r in steps if r.name == "evaluate")
    single = {
        k: v
        for k, v in evaluate.latest_metrics.items()
        if len([p for p in ws.store.runs.metric_history(evaluate.id) if p.key == k]) == 1
    }
    assert single, "the evaluate step logs its scores once"
    ws.store.runs.set_tags(evaluate.id, {"note": "x" * 400})
    with _chromium_page(url) as page:
        from playwright.sync_api import expect  # after _chromium_page's check that it is there

        page.fill("input[name=token]", secret)
        page.click("text=open dashboard")
        expect(page.get_by_test_id("runs-table")).to_be_visible()

        # The model page: version numbers, and every link on it opens a real page.
        page.goto(f"{url}/#/models/maintenance")
        table = page.get_by_test_id("model-versions")
        expect(table.get_by_test_id("version-1")).to_have_text("v1")
        page.screenshot(path=str(ARTIFACTS / "10-model-versions.png"), full_page=True)
        # Side by side: the scores and data upstream of the version, and who promoted it.
        compare = page.get_by_test_id("version-compare")
        found = provenance(ws, ws.store.models.get_version("maintenance", 1))
        assert found.metrics
        assert found.datasets == {"sensors": world.train_dataset}
        for key, value in found.metrics.items():
            expect(compare.locator(f'tr[data-row="metric:{key}"] td')).to_have_text(_shown(value))
        expect(compare.locator('tr[data-row="dataset:sensors"] td')).to_have_text(
            world.train_dataset
        )
        (move,) = ws.store.models.alias_history("maintenance")
        expect(compare.locator('tr[data-row="promoted"] td')).to_contain_text(
            f"production by {move.actor}"
        )
        links = table.locator("a").evaluate_all("(as) => as.map((a) => a.href)")
        assert any("lineage/model_version/maintenance%401" in h for h in links), links
        assert any("/runs/" in h for h in links), links
        for link in links:
            _open_and_check(page, link)
            if "lineage" in link:
                expect(page.get_by_test_id("lineage-focus")).to_contain_text(
                    f"model {world.model_ref}"
                )

        # Dataset versions: the profile's row count, in the list and on the version page.
        page.goto(f"{url}/#/datasets/sensors")
        expect(page.locator("main table tbody tr").first).to_contain_text(f"{rows}")
        assert "— rows" not in page.inner_text("main")
        page.goto(f"{url}/#/datasets/sensors/1")
        expect(page.locator("main p").first).to_contain_text(f"{rows} rows")

        # Monitoring: the latest report saw no drift, so no banner, though the table still
        # shows the older report's drift.
        page.goto(f"{url}/#/monitoring")
        row = page.locator(f'[data-testid=drift-table] tr[data-feature="{DRIFTED}"]')
        expect(row.locator("td.drift")).to_have_count(1)
        expect(page.get_by_test_id("drifted-features")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "11-monitoring-latest.png"), full_page=True)

        # The evaluate step: a 400-character tag wraps inside the page, and its one-off
        # scores are numbers, not dots on a chart.
        page.goto(f"{url}/#/runs/{evaluate.id}")
        values = page.get_by_test_id("single-metrics")
        for key, value in single.items():
            expect(values.locator(f'tr[data-metric="{key}"] td')).to_have_text(_shown(value))
            expect(page.locator(f'.chart[data-chart="{key}"]')).to_have_count(0)
        expect(page.locator("main")).to_contain_text("x" * 400)
        width = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert width[0] <= width[1], f"the run page overflows: {width}"
        page.screenshot(path=str(ARTIFACTS / "12-run-long-tag.png"), full_page=True)

        # Deployments: what serves where, at which revision, and every link opens a page.
        dep = ws.store.deployments.get(world.deployment)
        page.goto(f"{url}/#/deployments")
        row = page.get_by_test_id("deployments").locator("tbody tr", has_text=world.deployment)
        expect(row).to_be_visible()
        cells = row.locator("td").all_inner_texts()
        assert cells[:3] == [world.deployment, dep.target, dep.status], cells
        assert cells[3] == world.model_ref, cells
        assert cells[4] == str(dep.current.revision if dep.current else "—"), cells
        links = row.locator("a").evaluate_all("(as) => as.map((a) => a.href)")
        assert len(links) == 3, links  # the deployment, its model, its lineage
        for link in links:
            _open_and_check(page, link)
        # The deployment's page shows its rollouts: each step's analysis, per variant.
        page.goto(f"{url}/#/deployments/{world.deployment}")
        rollout = page.locator(".rollout").first
        expect(rollout).to_contain_text("canary rollout")
        expect(rollout).to_contain_text("step 1: canary 5% — FAILED")
        expect(rollout.locator("td.fail")).to_have_text("FAIL")
        expect(rollout.locator(".chart, canvas").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "11b-deployment-rollouts.png"), full_page=True)

        # Compare two runs: each run's params and metric values in its own column.
        train = next(r for r in steps if r.name == "train")
        page.goto(f"{url}/#/runs")
        boxes = page.get_by_test_id("runs-table").locator("tbody tr")
        expect(boxes.first).to_be_visible()
        for run in (evaluate, train):
            boxes.filter(has_text=run.id[:8]).locator("input[type=checkbox]").check()
        page.click("text=compare 2")
        table = page.get_by_test_id("compare-table")
        expect(table).to_be_visible()
        heads = table.locator("thead th").all_inner_texts()[1:]
        order = [next(r for r in (evaluate, train) if h.startswith(r.id[:8])) for h in heads]
        assert len(order) == 2, heads
        assert evaluate.latest_metrics, "the compared runs have metrics to show"
        for key in sorted({k for r in order for k in r.latest_metrics}):
            shown = table.locator("tbody tr", has=page.locator(f"th:text-is('metric {key}')"))
            expected = [
                _shown(r.latest_metrics[key]) if key in r.latest_metrics else "—" for r in order
            ]
            assert shown.locator("td").all_inner_texts() == expected, key
        for key in sorted({k for r in order for k in r.params}):
            shown = table.locator("tbody tr", has=page.locator(f"th:text-is('param {key}')"))
            assert shown.locator("td").all_inner_texts() == [r.params.get(key, "—") for r in order]
        for link in table.locator("thead a").evaluate_all("(as) => as.map((a) => a.href)"):
            _open_and_check(page, link)
