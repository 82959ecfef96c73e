"""A whole kflow per test for the console: orchestrator, processor, both projectors and the
API (serving ``/ui``) on the test's topics, schema and Redis prefix, plus headless Chromium.

Chromium is Debian's (``apt-get install chromium``, done by ``stack.sh install``), driven by
Playwright with ``executable_path``; Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.readside.conftest import (  # noqa: F401  (fixtures)
    ApiServer,
    ReadSide,
    RunningProjector,
    api,
    make_key,
    readside,
    start_projector,
    wait_until,
)
from tests.runtime.conftest import Runtime, runtime_factory  # noqa: F401  (fixtures)

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")


def chromium_path() -> str:
    """Debian's Chromium (``KFLOW_CHROMIUM`` overrides); fails with the fix when missing."""
    chosen = os.environ.get("KFLOW_CHROMIUM")
    for path in ([chosen] if chosen else []) + list(CHROMIUM_CANDIDATES):
        if Path(path).is_file():
            return path
    pytest.fail(
        "no Chromium: run `bash deploy/local/stack.sh install` (apt-get install chromium)"
        " or set KFLOW_CHROMIUM to a Chromium binary",
        pytrace=False,
    )


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    # Package scope, not session: the sync API keeps an event loop running on the main thread
    # while it is open, and every asyncio test collected after tests/console would then fail
    # with "Runner.run() cannot be called from a running event loop".
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
    yield b
    b.close()


def task(node_id: str, type_: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "queue": "default", **extra}


APPROVAL = {
    "name": "approve",
    "nodes": [
        task("prepare", input={"amount": "$input.amount"}),
        {"id": "review", "type": "approval", "depends_on": ["prepare"]},
        task("pay", depends_on=["review"], input={"by": "$steps.review.output.by"}),
    ],
}
QUICK = {"name": "quick", "nodes": [task("only")]}


@dataclass
class Console:
    """A running kflow with the console, and helpers to drive it like a user would."""

    api: ApiServer
    readside: ReadSide
    runtime: Runtime
    projectors: list[RunningProjector]
    make_key: Callable[..., str]
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.api.url

    def key(self, tenant: str, scope: str) -> str:
        """One key per (tenant, scope), made on first use."""
        name = f"{tenant}:{scope}"
        if name not in self.keys:
            self.keys[name] = self.make_key(tenant, scope)
        return self.keys[name]

    def define(self, definition: dict[str, Any]) -> None:
        """Publish a definition and wait until the read model has it (starts need a version)."""
        self.runtime.apply(definition)
        with self.readside.connect() as conn:

            def known() -> bool:
                row = conn.execute(
                    "SELECT 1 FROM definitions WHERE name = %s", (definition["name"],)
                ).fetchone()
                return row is not None

            wait_until(known, f"definition {definition['name']} in the read model", 60)

    def start(
        self, token: str, name: str, input: Any = None, workflow_id: str | None = None
    ) -> str:
        """Start a workflow through the JSON API (so it gets the key's tenant and actor)."""
        body: dict[str, Any] = {"name": name, "input": input}
        if workflow_id is not None:
            body["workflow_id"] = workflow_id
        r = httpx.post(
            f"{self.url}/workflows", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 202, r.text
        return str(r.json()["workflow_id"])

    def status(self, workflow_id: str) -> str | None:
        with self.readside.connect() as conn:
            row = conn.execute(
                "SELECT status FROM executions WHERE workflow_id = %s", (workflow_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def wait_status(self, workflow_id: str, status: str, limit_s: float = 60) -> None:
        wait_until(lambda: self.status(workflow_id) == status, f"{workflow_id} {status}", limit_s)

    def step_status(self, workflow_id: str, node_id: str) -> str | None:
        with self.readside.connect() as conn:
            row = conn.execute(
                "SELECT status FROM steps WHERE workflow_id = %s AND node_id = %s",
                (workflow_id, node_id),
            ).fetchone()
        return None if row is None else str(row[0])

    def wait_step(self, workflow_id: str, node_id: str, status: str) -> None:
        wait_until(
            lambda: self.step_status(workflow_id, node_id) == status,
            f"{workflow_id} step {node_id} {status}",
            60,
        )


@pytest.fixture
def console(
    readside: ReadSide,  # noqa: F811
    runtime_factory: Runtime,  # noqa: F811
    start_projector: Callable[[str], RunningProjector],  # noqa: F811
    make_key: Callable[..., str],  # noqa: F811
) -> Iterator[Console]:
    """Orchestrator, processor, PostgreSQL and Redis projectors, and the API with the console."""
    runtime_factory.start_orchestrator()
    runtime_factory.start_processor("default")
    projectors = [start_projector("postgres"), start_projector("redis")]
    server = ApiServer(readside)
    yield Console(server, readside, runtime_factory, projectors, make_key)
    server.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    p = context.new_page()
    p.set_default_timeout(30_000)
    p.on("dialog", lambda d: d.accept())  # hx-confirm asks; the user says yes
    return p


@pytest.fixture
def shot(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Page, str], Path]:
    """Save a screenshot under tests/artifacts/console/ (gitignored) and the test's tmp_path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)

    def take(p: Page, label: str) -> Path:
        path = ARTIFACTS / f"{stem}-{label}.png"
        p.screenshot(path=str(path), full_page=True)
        p.screenshot(path=str(tmp_path / f"{label}.png"), full_page=True)
        return path

    return take


def sign_in(page: Page, base_url: str, token: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto(f"{base_url}/ui")
    assert "/ui/login" in page.url
    page.fill("input[name=api_key]", token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/workflows.*"))


def wait_seconds(check: Callable[[], bool], what: str, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)
