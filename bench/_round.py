"""``fedzero-bench round``: one federated round on a real link and real nodes.

A link process and N node processes run on ``ipc://`` sockets in a private
temporary directory (:mod:`fedzero.bench._round_fed`); their ClientApp
(written there at run time, see :mod:`fedzero.bench._round_procs`) replies
with the received arrays + 1. This
process is the ServerApp: through a :class:`~fedzero.core.Grid` it sends one
float32 model to every node as one fan-out, and times the round until every
reply is in. Timing starts once the link is warm (its aggregation kernels
compiled). In the same run two floors are timed with nothing but pyzmq: the
*network floor* (each node's model down and its update up once, 2 x N x model
bytes: what any hub design must move; :mod:`fedzero.bench._round_raw`) and the
*relay floor* (the same bytes through exactly fedzero's hops for the chosen
isolation, with the same +1 in the client; :mod:`fedzero.bench._round_relay`).
A process-isolation run also times a thread-isolation federation (rounds
interleaved with the process-isolation ones) and its relay floor, so the cost
of the worker processes is measured in the same run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._round_fed import Model, federations
from ._round_procs import Processes
from ._round_raw import raw_reference
from ._round_relay import relay_floor
from ._stats import Summary, machine


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
    startup_timeout: float = 120.0,
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
        A JSON-ready report (times in seconds, sizes in bytes). With process
        isolation it also times thread isolation in the same run: the report's
        ``thread`` holds that federation's figures and floors, and
        ``ratio_thread`` is process / thread (medians).

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
        # Process isolation is judged against thread isolation timed in the same run.
        isolations = [isolation] if isolation == "thread" else [isolation, "thread"]
        run = (model, nodes, rounds, timeout, startup_timeout, aggregate)
        figures = federations(procs, root, isolations, *run)
        fed, thread = figures[isolation], figures.get("thread") if isolation != "thread" else None
        payload = flat.view(np.uint8).data
        raw = raw_reference(procs, f"ipc://{root}/raw", payload, nodes, rounds, timeout)
        relay = {
            iso: relay_floor(
                procs,
                tmp,
                payload,
                nodes,
                rounds,
                timeout,
                isolation=iso,
                aggregate=aggregate is not None,
            )
            for iso in ([isolation] if thread is None else [isolation, "thread"])
        }
    settings = {"nodes": nodes, "params": params, "layers": layers, "rounds": rounds}
    report = _report(settings, aggregate, isolation, model_bytes, fed, raw, relay[isolation])
    if thread is not None:
        report["thread"] = _report(
            settings, aggregate, "thread", model_bytes, thread, raw, relay["thread"]
        )
        del report["thread"]["machine"]
        report["ratio_thread"] = report["round_s"]["median"] / report["thread"]["round_s"]["median"]
    return report


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
    # agent <-> worker, per node, each way (one memcpy through a shared-memory segment)
    hops = 2 if isolation == "process" else 0
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
    thread = report.get("thread")
    if thread is not None:
        table.add_row(
            "same run, thread isolation (ClientApp in the node process)",
            Summary(**thread["round_s"]).ms(),
            f"{report['ratio_thread']:.2f}x",
        )
        table.add_row(
            "thread isolation's relay floor (thread / floor)",
            Summary(**thread["relay_floor_s"]).ms(),
            f"{thread['ratio_relay_floor']:.2f}x",
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
