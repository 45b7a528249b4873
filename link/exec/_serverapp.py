"""``python -m fedzero.link.exec._serverapp``: one run's ServerApp process (started by exec).

Loads the ServerApp from the run's extracted bundle, attaches to the run on the
link's app endpoint, and runs it. Exit code 0 means the app returned; on an
exception the last line printed is ``FEDZERO-ERROR: <type>: <message>`` after
the traceback, which the exec service records as the run's error.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from fedzero.core import configure_logging, run_server_app
from fedzero.core.bundles import load_server_app, read_app_spec

from ._service import ERROR_MARK


def main(argv: list[str] | None = None) -> int:
    """Run the ServerApp of ``--app-dir`` for run ``--run-id``; return the exit code."""
    parser = argparse.ArgumentParser(prog="fedzero-serverapp")
    parser.add_argument("--app-dir", type=Path, required=True)
    parser.add_argument("--link", required=True, help="the link's app endpoint")
    parser.add_argument("--run-id", type=int, required=True)
    args = parser.parse_args(argv)
    configure_logging("info", fmt="console", stream=sys.stdout)
    try:
        app = load_server_app(read_app_spec(args.app_dir))
        run_server_app(app, args.link, run_id=args.run_id)
    except BaseException as exc:  # report everything, including SystemExit from user code
        if isinstance(exc, KeyboardInterrupt):
            return 130
        traceback.print_exc(file=sys.stdout)
        first = (str(exc).splitlines() or [""])[0]
        print(f"{ERROR_MARK}{type(exc).__name__}: {first}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
