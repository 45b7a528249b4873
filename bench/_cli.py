"""The ``fedzero-bench`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="fedzero benchmarks: figures are medians of several runs, next to a reference "
    "measured in the same run.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _group() -> None:
    """Keep subcommands even while only one exists."""


_JSON = Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]


@app.command()
def codec(
    megabytes: Annotated[int, typer.Option(help="Model size in MB (10^6 bytes).", min=1)] = 100,
    runs: Annotated[int, typer.Option(help="Timed runs per measurement.", min=1)] = 9,
    as_json: _JSON = False,
) -> None:
    """Encode + decode a model vs safetensors.numpy save + load, in the same run."""
    from ._codec import print_codec_table, run_codec_bench

    report = run_codec_bench(megabytes * 1_000_000, runs)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_codec_table(report)


@app.command("round")
def round_(
    nodes: Annotated[int, typer.Option(help="Node processes.", min=1)] = 4,
    params: Annotated[int, typer.Option(help="float32 parameters in the model.", min=1)] = (
        25_000_000
    ),
    rounds: Annotated[int, typer.Option(help="Timed rounds (after one warm-up).", min=1)] = 5,
    layers: Annotated[int, typer.Option(help="Arrays the model is split into.", min=1)] = 1,
    aggregate: Annotated[
        Optional[str],  # noqa: UP045 - typer needs Optional here
        typer.Option(help="Aggregate on the link (fedavg, trimmed_mean, median, krum)."),
    ] = None,
    isolation: Annotated[
        str, typer.Option(help="Nodes run ClientApps in a worker process per run, or a thread.")
    ] = "process",
    as_json: _JSON = False,
) -> None:
    """A round on a local link + node processes vs raw zmq for the same bytes, in the same run."""
    import sys

    from fedzero.core import configure_logging

    from ._round import print_round_report, run_round_bench

    configure_logging("warning", stream=sys.stderr)  # stdout is for the report
    report = run_round_bench(
        nodes, params, rounds, layers, aggregate=aggregate, isolation=isolation
    )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_round_report(report)


@app.command()
def aggregate(
    clients: Annotated[int, typer.Option(help="Client updates K.", min=1)] = 16,
    params: Annotated[int, typer.Option(help="Parameters P per update.", min=1)] = 25_000_000,
    layers: Annotated[int, typer.Option(help="Arrays each update is split into.", min=1)] = 1,
    dtype: Annotated[str, typer.Option(help="float16, bfloat16, float32 or float64.")] = "float32",
    runs: Annotated[int, typer.Option(help="Timed runs per kernel.", min=1)] = 5,
    threads: Annotated[
        Optional[int],  # noqa: UP045 - typer needs Optional here
        typer.Option(help="Numba threads (default: all cores)."),
    ] = None,
    as_json: _JSON = False,
) -> None:
    """Aggregation kernels: GB/s of client input vs NumPy and a same-size copy, same run."""
    import sys

    from fedzero.core import configure_logging

    from ._aggregate import aggregate_command

    configure_logging("warning", stream=sys.stderr)  # stdout is for the report
    code = aggregate_command(clients, params, layers, dtype, runs, threads, as_json)
    raise typer.Exit(code)


@app.command()
def fleet(
    nodes: Annotated[int, typer.Option(help="Nodes in the swarm.", min=1)] = 10_000,
    window: Annotated[
        float, typer.Option(help="Seconds the link idles with every node heartbeating.", min=1)
    ] = 120.0,
    rounds: Annotated[
        int, typer.Option(help="Timed FedAvg rounds (after one warm-up).", min=1)
    ] = 3,
    as_json: _JSON = False,
) -> None:
    """N nodes on one real link: registration, idle CPU/RSS, false offlines, a FedAvg round."""
    import sys

    from fedzero.core import configure_logging

    from ._fleet import print_fleet_report, run_fleet_bench

    configure_logging("warning", stream=sys.stderr)  # stdout is for the report
    report = run_fleet_bench(nodes, window=window, rounds=rounds)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_fleet_report(report)


@app.command()
def startup(
    runs: Annotated[int, typer.Option(help="Fresh processes per command.", min=1)] = 10,
    link: Annotated[
        bool, typer.Option(help="Start a link + node for `fedzero ls` and node RSS.")
    ] = True,
    as_json: _JSON = False,
) -> None:
    """Import and start-up cost: medians of fresh processes vs `python -c pass`, same run."""
    import sys

    from fedzero.core import configure_logging

    from ._startup import print_startup_report, run_startup_bench

    configure_logging("warning", stream=sys.stderr)  # stdout is for the report
    report = run_startup_bench(runs, with_link=link)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_startup_report(report)


@app.command()
def headers(
    runs: Annotated[int, typer.Option(help="Timed repeats per figure.", min=1)] = 9,
    as_json: _JSON = False,
) -> None:
    """Strict JSON of real frame-0 headers: fedzero (orjson) vs the stdlib, parse and write."""
    from ._headers import print_headers_report, run_headers_bench

    report = run_headers_bench(runs)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_headers_report(report)


@app.command()
def coldstart(
    app_dir: Annotated[Path, typer.Option("--app", help="App directory.")] = Path(
        "examples/quickstart"
    ),
    nodes: Annotated[int, typer.Option(help="Node processes.", min=1)] = 2,
    runs: Annotated[int, typer.Option(help="Cold + warm pairs, each on a new cache.", min=1)] = 1,
    as_json: _JSON = False,
) -> None:
    """A fresh install's first aggregated round (empty kernel cache) vs a warm cache."""
    from ._coldstart import coldstart_command

    code = coldstart_command(app_dir, nodes, runs, as_json)
    if code:
        raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``fedzero-bench`` console script."""
    app()
