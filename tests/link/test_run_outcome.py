"""Issue 10, item 6: a run's terminal status is decided once, and what the store
holds of a run (its counters) agrees with its rounds at every round.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedzero.core.bundles import build_bundle
from fedzero.core.cli import ControlClient
from fedzero.link.store import SqliteReader
from tests.apps.echo.echoapp import client as echo
from tests.helpers import FAST, federation

pytestmark = pytest.mark.timeout(120)

_SLACK = 5 * float(FAST["heartbeat_timeout"])  # scheduling slack on a starved machine

_FAILING = """
from fedzero.core import ServerApp

server = ServerApp()
client = None


@server.main()
def main(grid, context):  # type: ignore[no-untyped-def]
    raise ValueError("boom after the work")  # its Grid still says app_bye on the way out
"""


def _project(root: Path, name: str, source: str) -> Path:
    project = root / name
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0.0.0"\n\n'
        f'[tool.fedzero.app]\nserverapp = "{name}app:server"\nclientapp = "{name}app:client"\n'
    )
    (project / f"{name}app.py").write_text(source)
    return project


def test_a_serverapp_that_says_bye_then_fails_is_recorded_failed_once(tmp_path: Path) -> None:
    bundle = build_bundle(_project(tmp_path, "failing", _FAILING))
    app = {"name": bundle.name, "hash": bundle.hash}
    with (
        federation(echo, [], state_dir=tmp_path / "state") as (link, _),
        ControlClient(link.control_endpoint, timeout=30 * _SLACK) as client,
    ):
        _, submitted = client.request("submit_run", bundle.data, app=app, run_config={})
        run_id = submitted["run_id"]
        row = client.wait_done(run_id, timeout=30 * _SLACK)
        client.request("sync")
    assert row["status"] == "failed"
    assert "boom after the work" in row["error"]
    reader = SqliteReader(tmp_path / "state" / "link.db")
    try:
        stored = reader.get_run(run_id)
        ended = [e.data for e in reader.events(run_id=run_id) if e.kind == "run_ended"]
    finally:
        reader.close()
    assert stored is not None
    assert (stored.status, stored.error) == ("failed", row["error"])
    assert ended == [{"status": "failed", "error": row["error"]}]  # never "finished" first
