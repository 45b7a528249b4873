"""The ``fedzero-bench`` command line."""

from __future__ import annotations

import json
from typing import Annotated

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
    from fedzero.bench._codec import print_codec_table, run_codec_bench

    report = run_codec_bench(megabytes * 1_000_000, runs)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_codec_table(report)


def main() -> None:
    """Entry point of the ``fedzero-bench`` console script."""
    app()
