"""The federations of ``fedzero-bench round``: a link and N nodes each, timed round by round.

Each federation is a link process and N node processes on ``ipc://`` sockets in
its own folder; this process is their ServerApp (one :class:`~fedzero.core.Grid`
each). Several federations (process and thread isolation) run side by side and
their rounds are interleaved, so a machine whose load drifts during the run
weighs on both alike and their ratio stays meaningful.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedzero.core import ArrayRecord, FedzeroTimeoutError, Grid, Message, RecordDict

from ._round_procs import Processes, peak_rss_bytes, write_app_project
from ._stats import BenchError, Summary

Model = dict[str, npt.NDArray[np.float32]]

_RECORD = "model"
_HEARTBEAT_INTERVAL = 1.0
# Generous: on a small machine a node's IO thread can be busy for a while
# with 100 MB frames, and a node marked offline would spoil the figures (10 s
# was not enough for 2 links + 16 nodes warming up at load 15).
_HEARTBEAT_TIMEOUT = 60.0
# The link compiles its kernels before the warm-up round returns: minutes with a
# cold Numba cache on a busy small machine.
_WARMUP_TIMEOUT = 300.0
_GRID_SILENCE = 3600.0


def federations(
    procs: Processes,
    root: Path,
    isolations: list[str],
    model: Model,
    nodes: int,
    rounds: int,
    timeout: float,
    startup_timeout: float,
    aggregate: str | None,
) -> dict[str, dict[str, Any]]:
    """Start one federation per isolation, time their rounds interleaved, stop them.

    Returns:
        Per isolation: ``round_s`` (a :class:`Summary`), ``startup_s``,
        ``link_warmup_s``, ``link_peak_rss_bytes``, ``node_peak_rss_bytes_max``.

    Raises:
        BenchError: a process died, or a reply was missing or wrong (with the link's log).
    """
    started = time.perf_counter()
    links = {iso: _start_federation(procs, root / iso, nodes, iso) for iso in isolations}
    figures: dict[str, dict[str, Any]] = {iso: {} for iso in isolations}
    content = RecordDict({_RECORD: ArrayRecord(model)})  # one object: one fan-out
    expected = {name: arr + 1 for name, arr in model.items()}
    samples: dict[str, list[float]] = {iso: [] for iso in isolations}
    try:
        with contextlib.ExitStack() as stack:
            grids, node_ids = {}, {}
            for iso in isolations:
                connecting = time.perf_counter()
                left = max(1.0, started + startup_timeout - connecting)
                # idle while the other federations run: silence is no sign of a dead link
                # here (a dead process is caught by procs.check_alive)
                app = f"ipc://{root / iso}/app"
                grid = Grid(app, connect_timeout=left, heartbeat_timeout=_GRID_SILENCE)
                stack.enter_context(grid)
                node_ids[iso] = _wait_for_nodes(grid, procs, nodes, started + startup_timeout)
                figures[iso]["startup_s"] = time.perf_counter() - connecting
                warm = time.perf_counter()
                _wait_link_warm(grid, node_ids[iso], _WARMUP_TIMEOUT)
                figures[iso]["link_warmup_s"] = time.perf_counter() - warm
                grids[iso] = grid
            for rnd in range(rounds + 1):  # round 0 warms up
                for iso in isolations:
                    ids = node_ids[iso]
                    args = (content, expected, rnd, timeout, aggregate)
                    elapsed = _one_round(grids[iso], procs, ids, *args)
                    if rnd:
                        samples[iso].append(elapsed)
    except Exception as exc:
        procs.check_alive()  # a dead process is the better explanation
        logs = "".join(f"\n--- {iso} link log:\n{procs.log_tail(f'{iso}-link')}" for iso in links)
        raise BenchError(f"{exc}{logs}") from exc
    for iso, link_pid in links.items():
        node_pids = [pid for name, pid in procs.pids().items() if name.startswith(f"{iso}-node-")]
        figures[iso]["round_s"] = Summary.of(samples[iso])
        figures[iso]["link_peak_rss_bytes"] = peak_rss_bytes(link_pid)
        figures[iso]["node_peak_rss_bytes_max"] = max(peak_rss_bytes(pid) for pid in node_pids)
    procs.stop(*procs.pids())
    return figures


def _start_federation(procs: Processes, root: Path, nodes: int, isolation: str) -> int:
    """Start the link and the nodes in ``root`` (named ``<isolation>-...``); the link's PID."""
    root.mkdir()
    app_dir = write_app_project(root)
    fleet = f"ipc://{root}/fleet"
    link = procs.spawn(
        f"{isolation}-link",
        "fedzero.link",
        [
            "--fleet-address",
            fleet,
            "--app-address",
            f"ipc://{root}/app",
            "--heartbeat-interval",
            str(_HEARTBEAT_INTERVAL),
            "--heartbeat-timeout",
            str(_HEARTBEAT_TIMEOUT),
            "--max-concurrent-uploads",
            "4",
            "--max-upload-mb",
            "256",
            "--state-dir",
            str(root / "state"),
            "--control-address",
            f"ipc://{root}/control",
            "--http-address",
            "",
            "--log-level",
            "warning",
        ],
    )
    for i in range(nodes):
        procs.spawn(
            f"{isolation}-node-{i}",
            "fedzero.node",
            [
                "--isolation",
                isolation,
                "--app",
                str(app_dir),
                "--link",
                fleet,
                "--node-config",
                f"partition-id={i}",
                "--log-level",
                "warning",
            ],
        )
    return link.pid


def _wait_for_nodes(grid: Grid, procs: Processes, nodes: int, deadline: float) -> list[int]:
    """Return the node ids once ``nodes`` are online (checking the processes each second)."""
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise FedzeroTimeoutError(f"{nodes} nodes did not come online in time")
        # The link answers as soon as enough nodes are online.
        try:
            ids = grid.get_node_ids(min_nodes=nodes, timeout=min(1.0, left))
        except FedzeroTimeoutError:  # a link busy registering N nodes on a loaded machine
            ids = []
        if len(ids) >= nodes:
            return ids[:nodes]
        procs.check_alive()


def _wait_link_warm(grid: Grid, node_ids: list[int], timeout: float) -> None:
    """Run one tiny link-aggregated round, which returns once the link is warm.

    The link compiles its aggregation kernels in its fold worker at start-up;
    the worker handles this round's fold only after that, so timed rounds never
    share the CPU with the compiler (benchmarks exclude compile time).
    """
    content = RecordDict({_RECORD: ArrayRecord({"w": np.zeros(1, dtype=np.float32)})})
    messages = [grid.create_message(content, "train", nid, group_id="warm-up") for nid in node_ids]
    result = grid.send_and_receive(
        messages, timeout=timeout, aggregate={"arrays_key": _RECORD, "weight_key": ""}
    )
    arrays = result.arrays
    if result.replies != len(node_ids) or arrays is None or not np.array_equal(arrays["w"], [1]):
        raise BenchError(f"warm-up round: wrong link-aggregated result {result}")


def _one_round(
    grid: Grid,
    procs: Processes,
    node_ids: list[int],
    content: RecordDict,
    expected: Model,
    rnd: int,
    timeout: float,
    aggregate: str | None,
) -> float:
    """Send the model to every node, wait for the replies (or the aggregate); the time."""
    messages = [grid.create_message(content, "train", nid, group_id=str(rnd)) for nid in node_ids]
    start = time.perf_counter()
    if aggregate is not None:
        spec = {"method": aggregate, "arrays_key": _RECORD, "weight_key": ""}
        result = grid.send_and_receive(messages, timeout=timeout, aggregate=spec)
        elapsed = time.perf_counter() - start
        _check_aggregate(result, len(node_ids), expected, rnd)
        return elapsed
    replies = grid.send_and_receive(messages, timeout=timeout)
    elapsed = time.perf_counter() - start
    if len(replies) < len(messages):
        procs.check_alive()
        raise FedzeroTimeoutError(
            f"round {rnd}: {len(replies)} of {len(messages)} replies within {timeout:.0f}s"
        )
    _check_replies(replies, node_ids, expected, rnd)
    return elapsed


def _check_aggregate(result: Any, count: int, expected: Model, rnd: int) -> None:
    """Raise unless the link aggregated every reply into sent + 1."""
    if result.replies != count or result.arrays is None:
        raise BenchError(f"round {rnd}: aggregated {result.replies} of {count}: {result.failures}")
    for name, want in expected.items():
        if not np.allclose(result.arrays[name], want, rtol=1e-6):
            raise BenchError(f"round {rnd}: aggregated {name!r} is wrong")


def _check_replies(replies: list[Message], node_ids: list[int], expected: Model, rnd: int) -> None:
    """Raise unless every node replied with exactly the sent arrays + 1."""
    if sorted(r.metadata.src_node_id for r in replies) != sorted(node_ids):
        raise BenchError(f"round {rnd}: replies did not come from the sampled nodes")
    for reply in replies:
        node = reply.metadata.src_node_id
        if reply.has_error():
            raise BenchError(f"round {rnd}: node {node} failed: {reply.error}")
        record = reply.content.array_records.get(_RECORD)
        if record is None or list(record) != list(expected):
            raise BenchError(f"round {rnd}: node {node} replied without the model's arrays")
        for name, want in expected.items():
            if not np.array_equal(record[name], want):
                raise BenchError(f"round {rnd}: node {node} replied a wrong {name!r}")
