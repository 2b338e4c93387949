"""The Dagster UI in a real browser: headless Chromium (Debian's, driven by Playwright) against
dagster-webserver serving the project's code location on a test conf. It shows the bronze,
silver and gold assets by name, and an asset check's result recorded in the instance.

Asset keys and check names come from the code location itself, so the test follows conf/.
Screenshots land in .headwater/test-artifacts/dagster-ui-*.png."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import BrowserContext, expect

from devstack.services.dagster_ui import DagsterUi
from devstack.services.ports import free_port
from streaming.config import DagsterUiSettings
from tests.browser.chromium import PAGE_DEADLINE_MS, chromium, open_page, screenshot
from tests.conftest import write_conf
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("bronze", "silver", "gold")
# Two busy cores: the webserver and its code server take a minute to come up.
UI_DEADLINE_S = 240.0
RECORDED_BY = "tests/browser/test_dagster_ui.py"
expect.set_options(timeout=PAGE_DEADLINE_MS)
LOCATION_STATUS = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@dataclass(frozen=True)
class Ui:
    url: str
    graph: dg.AssetGraph
    check: dg.AssetCheckKey | None  # the check whose result was recorded


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """dagster-webserver on a free port over the project's definitions, loaded from a conf of
    this test (its own topics and lake), with one asset check result in its instance."""
    root = tmp_path_factory.mktemp("dagster-ui")
    unique = uuid.uuid4().hex[:8]
    settings = write_conf(
        root, topics=[f"t{unique}.orders", f"t{unique}.payments", f"t{unique}.customers"]
    )
    (settings.conf_dir / "gold").mkdir()
    for declaration in (REPO / "conf" / "gold").glob("*.yaml"):
        (settings.conf_dir / "gold" / declaration.name).write_text(declaration.read_text())
    home = root / "dagster"
    home.mkdir()
    env = {
        "DAGSTER_HOME": str(home),
        "HEADWATER_CONF": str(settings.conf_dir),
        "HEADWATER_PROFILE": "local",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        from orchestration.definitions import defs

        graph = defs().resolve_asset_graph()
        check = _record_a_check_result(graph)
    port = free_port()
    webserver = DagsterUi(
        DagsterUiSettings(port=port),
        home,
        {**os.environ, **env},
        cwd=REPO,
        command=[
            sys.executable,
            "-m",
            "dagster_webserver",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            "orchestration.definitions",
        ],
    )
    webserver.start()
    try:
        webserver.wait_until_answering(UI_DEADLINE_S)
        wait_until(
            lambda: _location_loaded(webserver.url),
            UI_DEADLINE_S,
            "the code location to load",
            poll_s=1.0,
        )
        yield Ui(webserver.url, graph, check)
    finally:
        webserver.stop()


def _record_a_check_result(graph: dg.AssetGraph) -> dg.AssetCheckKey | None:
    """A passing result of one of the code location's checks (on a bronze, silver or gold
    asset when there is one), written to the instance of $DAGSTER_HOME."""
    checks = sorted(
        graph.asset_check_keys, key=lambda c: (c.asset_key.path[0] not in LAYERS, str(c))
    )
    if not checks:
        return None
    check = checks[0]
    with dg.DagsterInstance.get() as instance:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=check.asset_key,
                check_name=check.name,
                passed=True,
                metadata={"recorded_by": RECORDED_BY},
            )
        )
    return check


def _location_loaded(url: str) -> bool:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": LOCATION_STATUS}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        entries = json.load(reply)["data"]["workspaceOrError"]["locationEntries"]
    for entry in entries:
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") == "PythonError":
            raise AssertionError(
                f"code location {entry['name']} failed to load: {loaded['message']}"
            )
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


def _label(key: dg.AssetKey) -> str:
    """How the catalog writes an asset key: 'silver / orders'."""
    return " / ".join(key.path)


def test_catalog_and_lineage_show_bronze_silver_and_gold(ui: Ui, browser: BrowserContext) -> None:
    by_layer = {
        layer: sorted(
            (k for k in ui.graph.get_all_asset_keys() if ui.graph.get(k).group_name == layer),
            key=str,
        )
        for layer in LAYERS
    }
    assert all(by_layer.values()), f"the code location has assets in every layer: {by_layer}"

    catalog = open_page(browser, f"{ui.url}/assets?view=flat")
    for keys in by_layer.values():
        for key in keys:
            expect(catalog.get_by_text(_label(key), exact=True).first).to_be_visible()
    screenshot(catalog, "catalog")

    # The lineage of a silver table fed by bronze and feeding gold shows all three layers.
    silver = next(
        key
        for key in by_layer["silver"]
        if any(p.path[0] == "bronze" for p in ui.graph.get(key).parent_keys)
        and any(c.path[0] == "gold" for c in ui.graph.get(key).child_keys)
    )
    neighbours = [
        next(p for p in sorted(ui.graph.get(silver).parent_keys, key=str) if p.path[0] == "bronze"),
        silver,
        next(c for c in sorted(ui.graph.get(silver).child_keys, key=str) if c.path[0] == "gold"),
    ]
    lineage = open_page(browser, f"{ui.url}/assets/{'/'.join(silver.path)}?view=lineage")
    for key in neighbours:
        expect(lineage.get_by_text(key.path[-1], exact=True).first).to_be_visible()
    path = screenshot(lineage, "lineage")
    print(f"lineage of {silver.to_user_string()}: {path}")


def test_checks_tab_shows_the_recorded_check_result(ui: Ui, browser: BrowserContext) -> None:
    assert ui.check is not None, (
        "the code location defines asset checks (orchestration/defs/quality)"
    )
    asset = "/".join(ui.check.asset_key.path)
    page = open_page(browser, f"{ui.url}/assets/{asset}?view=checks")
    expect(page.get_by_text(ui.check.name).first).to_be_visible()
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    expect(page.get_by_text(RECORDED_BY).first).to_be_visible()
    path = screenshot(page, "checks")
    print(f"checks of {ui.check.asset_key.to_user_string()}: {path}")
