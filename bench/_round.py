"""``fedzero-bench round``: one federated round on a real link and real nodes.

A link process and N node processes run on ``ipc://`` sockets in a private
temporary directory; their ClientApp (written there at run time, see
:mod:`fedzero.bench._round_procs`) replies with the received arrays + 1. This
process is the ServerApp: through a :class:`~fedzero.core.Grid` it sends one
float32 model to every node as one fan-out, and times the round until every
reply is in. Timing starts once the link is warm (its aggregation kernels
compiled). In the same run two floors are timed with nothing but pyzmq: the
*network floor* (each node's model down and its update up once, 2 x N x model
bytes: what any hub design must move; :mod:`fedzero.bench._round_raw`) and the
*relay floor* (the same bytes through exactly fedzero's hops for the chosen
isolation, with the same +1 in the client; :mod:`fedzero.bench._round_relay`).
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
from ._round_relay import relay_floor
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
        payload = flat.view(np.uint8).data
        raw = raw_reference(procs, f"ipc://{root}/raw", payload, nodes, rounds, timeout)
        relay = relay_floor(
            procs,
            tmp,
            payload,
            nodes,
            rounds,
            timeout,
            isolation=isolation,
            aggregate=aggregate is not None,
        )
    settings = {"nodes": nodes, "params": params, "layers": layers, "rounds": rounds}
    return _report(settings, aggregate, isolation, model_bytes, fed, raw, relay)


def _report(
    settings: dict[str, int],
    aggregate: str | None,
    isolation: str,
    model_bytes: int,
    fed: dict[str, Any],
    network: Summary,
    relay: Summary,
) -> dict[str, Any]:
    """The JSON-ready report of :func:`run_round_bench` (times in s, sizes in bytes)."""
    round_s: Summary = fed.pop("round_s")
    nodes = settings["nodes"]
    moved = 2 * nodes * model_bytes
    hops = 2 if isolation == "process" else 0  # agent <-> worker, per node, each way
    relayed = model_bytes + (2 + hops) * nodes * model_bytes
    relayed += model_bytes if aggregate else nodes * model_bytes
    return {
        "benchmark": "round",
        "transport": "ipc",
        **settings,
        "aggregate": aggregate,
        "isolation": isolation,
        "model_bytes": model_bytes,
        "bytes_per_round": {
            "down": nodes * model_bytes,
            "up": nodes * model_bytes,
            "network_floor": moved,
            "relayed": relayed,
        },
        "round_s": round_s.as_dict(),
        "network_floor_s": network.as_dict(),
        "relay_floor_s": relay.as_dict(),
        "ratio_network_floor": round_s.median / network.median,
        "ratio_relay_floor": round_s.median / relay.median,
        "round_gb_per_s": moved / round_s.median / 1e9,
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

    fed = Summary(**report["round_s"])
    network, relay = Summary(**report["network_floor_s"]), Summary(**report["relay_floor_s"])
    moved = report["bytes_per_round"]
    title = (
        f"round: {report['nodes']} nodes x {report['params']:,} float32 "
        f"({_size(report['model_bytes'])} in {report['layers']} arrays), "
        f"{report['isolation']} isolation, median \\[min-max] over {report['rounds']} rounds"
    )
    table = Table(title=title)
    for col in ("measurement", "time per round", "fedzero / this"):
        table.add_column(col, justify="left" if col == "measurement" else "right")
    table.add_row("fedzero round (link + nodes)", fed.ms(), "1.00x")
    table.add_row(
        "relay floor: raw zmq, fedzero's hops, +1 in the client",
        relay.ms(),
        f"{report['ratio_relay_floor']:.2f}x",
    )
    table.add_row(
        "network floor: raw zmq, model down + update up once per node",
        network.ms(),
        f"{report['ratio_network_floor']:.2f}x",
    )
    console = Console()
    console.print(table)
    console.print(
        f"bytes per round: network floor {_size(moved['network_floor'])}, "
        f"through fedzero's hops {_size(moved['relayed'])}"
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
