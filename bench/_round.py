"""``fedzero-bench round``: one federated round on a real link and real nodes.

A link process and N node processes run on ``ipc://`` sockets in a private
temporary directory; their ClientApp (written there at run time, see
:mod:`fedzero.bench._round_procs`) replies with the received arrays + 1. This
process is the ServerApp: through a :class:`~fedzero.core.Grid` it sends one
float32 model to every node as one fan-out, and times the round until every
reply is in. Timing starts once the link is warm (its aggregation kernels
compiled), and in the same run the same bytes are timed over raw pyzmq
(:mod:`fedzero.bench._round_raw`), the floor the round is compared with.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedzero.core import ArrayRecord, FedzeroTimeoutError, Grid, Message, RecordDict

from ._round_procs import Processes, peak_rss_bytes, write_app_project
from ._round_raw import raw_reference
from ._stats import BenchError, Summary, machine

Model = dict[str, npt.NDArray[np.float32]]

_RECORD = "model"
_HEARTBEAT_INTERVAL = 1.0
# Generous: on a small machine a node's IO thread can be busy for a while
# with 100 MB frames, and a node marked offline would spoil the figures.
_HEARTBEAT_TIMEOUT = 10.0


def make_model(params: int, layers: int) -> tuple[npt.NDArray[np.float32], Model]:
    """Return a flat random float32 model and its split into ``layers`` views.

    Raises:
        ValueError: ``params`` or ``layers`` is not positive, or ``layers > params``.
    """
    if params < 1 or layers < 1 or layers > params:
        raise ValueError(f"need 1 <= layers <= params, got params={params}, layers={layers}")
    flat = np.random.default_rng(0).random(params, dtype=np.float32)
    parts = np.array_split(flat, layers)
    return flat, {f"layer{i}": part for i, part in enumerate(parts)}


def run_round_bench(
    nodes: int,
    params: int,
    rounds: int,
    layers: int = 1,
    *,
    startup_timeout: float = 60.0,
    round_timeout: float | None = None,
    aggregate: str | None = None,
    isolation: str = "process",
) -> dict[str, Any]:
    """Time federated rounds on a local link + ``nodes`` node processes, and raw zmq.

    Args:
        nodes: node processes (each gets the model and replies).
        params: float32 parameters in the model.
        rounds: timed rounds (after one untimed warm-up round); also the raw
            reference's repetitions.
        layers: arrays the model is split into.
        startup_timeout: seconds allowed for the link and the nodes to come up.
        round_timeout: seconds allowed per round (default: from the bytes moved).
        aggregate: let the link aggregate with this method (e.g. ``"fedavg"``)
            instead of returning every reply to the ServerApp.
        isolation: how nodes run the ClientApp: ``"process"`` (a worker process
            per run) or ``"thread"`` (in the node's process).

    Returns:
        A JSON-ready report (times in seconds, sizes in bytes).

    Raises:
        BenchError: a process died, or a reply was missing or wrong.
        FedzeroTimeoutError: something did not happen within its deadline.
    """
    if nodes < 1 or rounds < 1:
        raise ValueError(f"need nodes >= 1 and rounds >= 1, got {nodes} and {rounds}")
    flat, model = make_model(params, layers)
    model_bytes = flat.nbytes
    moved = 2 * nodes * model_bytes
    timeout = round_timeout if round_timeout is not None else 60.0 + 20.0 * moved / 1e9
    with (
        tempfile.TemporaryDirectory(prefix="fedzero-bench-round-") as tmp,
        Processes(Path(tmp)) as procs,
    ):
        root = Path(tmp)
        started = time.perf_counter()
        link_pid = _start_federation(procs, root, nodes, isolation)
        node_pids = [pid for name, pid in procs.pids().items() if name.startswith("node-")]
        fed = _federated_rounds(
            procs,
            f"ipc://{root}/app",
            model,
            nodes,
            rounds,
            timeout,
            started + startup_timeout,
            aggregate,
        )
        fed["link_peak_rss_bytes"] = peak_rss_bytes(link_pid)
        fed["node_peak_rss_bytes_max"] = max(peak_rss_bytes(pid) for pid in node_pids)
        procs.stop(*procs.pids())
        raw = raw_reference(
            procs,
            f"ipc://{root}/raw",
            flat.view(np.uint8).data,
            nodes,
            rounds,
            timeout,
        )
    round_s: Summary = fed.pop("round_s")
    return {
        "benchmark": "round",
        "transport": "ipc",
        "nodes": nodes,
        "params": params,
        "layers": layers,
        "rounds": rounds,
        "aggregate": aggregate,
        "isolation": isolation,
        "model_bytes": model_bytes,
        "bytes_per_round": {
            "down": nodes * model_bytes,
            "up": nodes * model_bytes,
            "total": moved,
            "server_app_link_hop": model_bytes + nodes * model_bytes,
        },
        "round_s": round_s.as_dict(),
        "raw_zmq_s": raw.as_dict(),
        "ratio_median": round_s.median / raw.median,
        "round_gb_per_s": moved / round_s.median / 1e9,
        "raw_zmq_gb_per_s": moved / raw.median / 1e9,
        **fed,
        "machine": machine(),
    }


def _start_federation(procs: Processes, root: Path, nodes: int, isolation: str = "process") -> int:
    """Start the link and the nodes; return the link's PID."""
    app_dir = write_app_project(root)
    fleet = f"ipc://{root}/fleet"
    link = procs.spawn(
        "link",
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
            f"node-{i}",
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


def _federated_rounds(
    procs: Processes,
    app_endpoint: str,
    model: Model,
    nodes: int,
    rounds: int,
    timeout: float,
    startup_deadline: float,
    aggregate: str | None = None,
) -> dict[str, Any]:
    """Connect as the ServerApp, wait for the nodes, run the rounds."""
    expected = {name: arr + 1 for name, arr in model.items()}
    connecting = time.perf_counter()
    try:
        connect_timeout = max(1.0, startup_deadline - connecting)
        with Grid(app_endpoint, connect_timeout=connect_timeout) as grid:
            node_ids = _wait_for_nodes(grid, procs, nodes, startup_deadline)
            startup = time.perf_counter() - connecting
            warm = time.perf_counter()
            _wait_link_warm(grid, node_ids, max(10.0, startup_deadline - warm))
            warm_up = time.perf_counter() - warm
            samples = _timed_rounds(
                grid, procs, node_ids, model, expected, rounds, timeout, aggregate
            )
    except Exception as exc:
        procs.check_alive()  # a dead process is the better explanation
        raise BenchError(f"{exc}\n--- link log:\n{procs.log_tail('link')}") from exc
    return {"round_s": Summary.of(samples), "startup_s": startup, "link_warmup_s": warm_up}


def _wait_for_nodes(grid: Grid, procs: Processes, nodes: int, deadline: float) -> list[int]:
    """Return the node ids once ``nodes`` are online (checking the processes each second)."""
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise FedzeroTimeoutError(f"{nodes} nodes did not come online in time")
        # The link answers as soon as enough nodes are online.
        ids = grid.get_node_ids(min_nodes=nodes, timeout=min(1.0, left))
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


def _timed_rounds(
    grid: Grid,
    procs: Processes,
    node_ids: list[int],
    model: Model,
    expected: Model,
    rounds: int,
    timeout: float,
    aggregate: str | None = None,
) -> list[float]:
    content = RecordDict({_RECORD: ArrayRecord(model)})  # one object: one fan-out
    samples = []
    for rnd in range(rounds + 1):
        messages = [
            grid.create_message(content, "train", nid, group_id=str(rnd)) for nid in node_ids
        ]
        start = time.perf_counter()
        if aggregate is not None:
            spec = {"method": aggregate, "arrays_key": _RECORD, "weight_key": ""}
            result = grid.send_and_receive(messages, timeout=timeout, aggregate=spec)
            if rnd:
                samples.append(time.perf_counter() - start)
            _check_aggregate(result, len(node_ids), expected, rnd)
            continue
        replies = grid.send_and_receive(messages, timeout=timeout)
        elapsed = time.perf_counter() - start
        if len(replies) < len(messages):
            procs.check_alive()
            raise FedzeroTimeoutError(
                f"round {rnd}: {len(replies)} of {len(messages)} replies within {timeout:.0f}s"
            )
        _check_replies(replies, node_ids, expected, rnd)
        del replies
        if rnd:  # round 0 warms up
            samples.append(elapsed)
    return samples


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


def print_round_report(report: dict[str, Any]) -> None:
    """Print the report as a table and a few lines."""
    from rich.console import Console
    from rich.table import Table

    fed, raw = Summary(**report["round_s"]), Summary(**report["raw_zmq_s"])
    moved = report["bytes_per_round"]
    title = (
        f"round: {report['nodes']} nodes x {report['params']:,} float32 "
        f"({_size(report['model_bytes'])} in {report['layers']} arrays), "
        f"median \\[min-max] over {report['rounds']} rounds"
    )
    table = Table(title=title)
    for col in ("measurement", "time per round", "GB/s"):
        table.add_column(col, justify="left" if col == "measurement" else "right")
    table.add_row("fedzero round (link + nodes)", fed.ms(), f"{report['round_gb_per_s']:.2f}")
    table.add_row("raw zmq, same bytes", raw.ms(), f"{report['raw_zmq_gb_per_s']:.2f}")
    console = Console()
    console.print(table)
    console.print(f"round / raw zmq (medians): {report['ratio_median']:.2f}x")
    console.print(
        f"bytes per round: {_size(moved['down'])} down + {_size(moved['up'])} up "
        f"(+ {_size(moved['server_app_link_hop'])} between the ServerApp and the link)"
    )
    console.print(
        f"peak RSS: link {report['link_peak_rss_bytes'] / 2**20:,.0f} MiB, "
        f"largest node {report['node_peak_rss_bytes_max'] / 2**20:,.0f} MiB; "
        f"start-up {report['startup_s']:.2f} s, then link warm-up {report['link_warmup_s']:.2f} s"
    )


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} B"
