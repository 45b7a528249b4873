"""Issue 10 on the link's edges: a submitted bundle is verified in full before a run
exists, and a SIGTERM drain of a real link process with a run in flight ends cleanly.
"""

from __future__ import annotations

import io
import os
import select
import signal
import time
import zipfile
from pathlib import Path

import pytest

from fedzero.core import Grid, ProtocolError
from fedzero.core.bundles import MANIFEST_NAME, Bundle, build_bundle
from fedzero.core.cli import ControlClient
from fedzero.link.exec import MAX_LINE
from fedzero.link.store import SqliteReader
from tests.apps.echo.echoapp import client as echo
from tests.helpers import ECHO_APP, FAST, federation, model, processes, socket_dir

pytestmark = pytest.mark.timeout(120)

_SLACK = 5 * float(FAST["heartbeat_timeout"])  # scheduling slack on a starved machine


def _tampered(bundle: Bundle) -> bytes:
    """The bundle with one file's bytes changed (same size): its manifest still matches its hash."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(bundle.data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            data = src.read(info)
            if info.filename != MANIFEST_NAME and data:
                data = bytes([data[0] ^ 0x20]) + data[1:]
            dst.writestr(info, data)
    return out.getvalue()


def test_submit_run_refuses_a_bundle_that_does_not_verify_and_starts_nothing(
    tmp_path: Path,
) -> None:
    bundle = build_bundle(ECHO_APP)
    app = {"name": bundle.name, "hash": bundle.hash}
    with (
        federation(echo, [], state_dir=tmp_path / "state") as (link, _),
        ControlClient(link.control_endpoint, timeout=30 * _SLACK) as client,
    ):
        with pytest.raises(ProtocolError, match=r"bundle refused: .*does not match the manifest"):
            client.request("submit_run", _tampered(bundle), app=app, run_config={})
        huge = bundle.data + bytes(64 * 2**20)  # over the cap: refused before any parsing
        with pytest.raises(ProtocolError, match=r"bundle refused: \d+ bytes, over"):
            client.request("submit_run", huge, app=app, run_config={})
        _, listed = client.request("list_runs", limit=10)
        assert listed["runs"] == []
        assert link.runs() == []
    assert not (tmp_path / "state" / "bundles").exists() or not any(
        (tmp_path / "state" / "bundles").iterdir()
    )


def _wait_fifo(path: Path, timeout: float) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready) and os.read(fd, 64).startswith(b"started")
    finally:
        os.close(fd)


def test_sigterm_during_a_round_of_a_real_link_exits_zero_within_grace_without_exceptions() -> None:
    grace = 2.0
    with socket_dir() as tmp, processes() as procs:
        extra = ("--drain-grace", str(grace), "--http-address", "127.0.0.1:0", "--warmup")
        link = procs.link(tmp, "link", *extra)
        fifo = tmp / "started"
        os.mkfifo(fifo)
        procs.node(tmp, "stuck", f"hang=true,started-fifo={fifo}")
        bundle = build_bundle(ECHO_APP)
        app = {"name": bundle.name, "hash": bundle.hash}
        with ControlClient(f"ipc://{tmp}/control", timeout=30 * _SLACK) as client:
            _, submitted = client.request("submit_run", bundle.data, app=app, run_config={})
        assert _wait_fifo(fifo, 30 * _SLACK), "the round never reached the node"
        link.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert link.wait(grace + 6 * _SLACK) == 0
        took = time.monotonic() - sent
        log = (tmp / "link.log").read_text()
        for sign in ("Traceback", "Exception in thread", "ContextTerminated", "handler_failed"):
            assert sign not in log, log[-3000:]
        assert took < grace + _SLACK, (
            f"the drain took {took:.1f} s (grace {grace} s)\n{log[-2000:]}"
        )
        reader = SqliteReader(tmp / "state" / "link.db")
        try:
            run = reader.get_run(submitted["run_id"])
            assert run is not None
            assert run.status != "running"
        finally:
            reader.close()


_CHATTY = """
import sys
from fedzero.core import ServerApp

server = ServerApp()
client = None


@server.main()
def main(grid, context):  # type: ignore[no-untyped-def]
    sys.stdout.write("x" * 300_000)  # no newline: the link must not buffer it whole
    sys.stdout.flush()
"""


def test_serverapp_output_without_a_newline_becomes_bounded_log_lines(tmp_path: Path) -> None:
    project = tmp_path / "chatty"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "chatty"\nversion = "0.0.0"\n\n'
        '[tool.fedzero.app]\nserverapp = "chattyapp:server"\nclientapp = "chattyapp:client"\n'
    )
    (project / "chattyapp.py").write_text(_CHATTY)
    bundle = build_bundle(project)
    app = {"name": bundle.name, "hash": bundle.hash}
    with (
        federation(echo, [], state_dir=tmp_path / "state") as (link, _),
        ControlClient(link.control_endpoint, timeout=30 * _SLACK) as client,
    ):
        _, submitted = client.request("submit_run", bundle.data, app=app, run_config={})
        lines = [
            e["data"]["line"]
            for e in client.follow_logs(submitted["run_id"])
            if e["kind"] == "log" and e["data"]["line"].startswith("x")
        ]
    assert "".join(lines).count("x") >= 300_000
    assert max(len(line) for line in lines) <= MAX_LINE
    assert len(lines) >= 300_000 // MAX_LINE


def test_after_sigkill_the_run_row_agrees_with_its_rounds() -> None:
    with socket_dir() as tmp, processes() as procs:
        link = procs.link(tmp)
        for i in range(2):
            procs.node(tmp, f"node{i}", f"examples={i + 1}")
        with Grid(f"ipc://{tmp}/app", connect_timeout=30 * _SLACK) as grid:
            nodes = grid.get_node_ids(min_nodes=2, timeout=30 * _SLACK)
            for server_round in ("1", "2"):
                content = model()
                msgs = [
                    grid.create_message(content, "train", n, group_id=server_round) for n in nodes
                ]
                result = grid.send_and_receive(msgs, aggregate={"method": "fedavg"})
                assert result.replies == 2
            with ControlClient(f"ipc://{tmp}/control", timeout=30 * _SLACK) as client:
                client.request("sync")  # every write of the two rounds is committed
            link.send_signal(signal.SIGKILL)
            assert link.wait(30 * _SLACK) == -signal.SIGKILL
            run_id = grid.run_id
        reader = SqliteReader(tmp / "state" / "link.db")
        try:
            run = reader.get_run(run_id)
            rounds = reader.list_rounds(run_id)
            assert run is not None
            assert [r.round for r in rounds] == [1, 2]
            assert run.rounds_done == 2
            assert sorted(run.nodes) == sorted(nodes)
            assert [r.replies for r in rounds] == [2, 2]
            # the counters are in each round's commit, not only in the periodic flush
            assert (run.messages_sent, run.replies) == (4, sum(r.replies for r in rounds))
            assert run.bytes_out > 0
            assert run.bytes_in > 0
        finally:
            reader.close()
