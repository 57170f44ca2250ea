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


def test_follow_lineage_and_see_drift_in_chromium(server: tuple[str, Workspace, Any]) -> None:
    require_service(CHROMIUM.exists(), f"chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        require_service(False, "playwright is not installed (pip install -e '.[dev]')")
        raise
    url, ws, world = server
    _, secret = ws.store.tokens.create("dashboard-viewer", "read")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/")

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
        finally:
            browser.close()
    assert errors == [], errors
