"""Run an acceptance app under Flower 1.42 itself, to record the figures the tests compare with.

Not a test: the figures it prints are written into ``test_acceptance.py`` as data.
Usage (with a venv holding ``flwr==1.42.0``; torch is borrowed from fedzero's venv)::

    /tmp/flwr-venv/bin/python tests/flower/flower_figures.py mlpfedavg 2
    /tmp/flwr-venv/bin/python tests/flower/flower_figures.py gridquery 3

It starts Flower's deployment engine on loopback (``flower-superlink --insecure``
and N ``flower-supernode --insecure`` with ``partition-id``/``num-partitions``),
submits the unmodified app with ``flwr run <app> local-deployment``, and prints
the figures the app's ServerApp wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
# torch (and its dependencies) borrowed from fedzero's venv: symlinks in this folder.
TORCH_PATH = Path(tempfile.gettempdir()) / "fz-flower" / "torchpath"


def main(app: str, nodes: int) -> None:
    """Run ``app`` on ``nodes`` Flower SuperNodes; print its figures as JSON."""
    with tempfile.TemporaryDirectory(prefix="fz-flower-") as tmp:
        work = Path(tmp)
        app_dir = shutil.copytree(HERE / "apps" / app, work / app)
        env = {**os.environ, "FLWR_HOME": str(work / "flwr-home")}
        env["PATH"] = f"{BIN}:{env.get('PATH', '')}"  # the SuperLink starts flower-superexec
        env["PYTHONPATH"] = os.environ.get("FZ_TORCH_PATH", str(TORCH_PATH))
        api, *node_ports = _free_ports(1 + nodes)  # 1.42: one HTTP API (fleet, control, runtime)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            logs = Path(tempfile.gettempdir()) / f"fz-flower-logs-{app}"
            shutil.rmtree(logs, ignore_errors=True)
            logs.mkdir()
            link = [
                str(BIN / "flower-superlink"),
                "--insecure",
                f"--port={api}",
                "--disable-runtime-dependency-installation",  # use this venv (+ TORCH_PATH)
            ]
            procs.append(_spawn(link, env, logs / "link"))
            for i in range(nodes):
                args = [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    f"--superlink=127.0.0.1:{api}",
                    f"--port={node_ports[i]}",
                    f"--node-config=partition-id={i} num-partitions={nodes}",
                ]
                procs.append(_spawn(args, env, logs / f"node{i}"))
            result = work / "figures.json"
            run = [str(BIN / "flwr"), "run", str(app_dir), "local-deployment", "--stream"]
            run += ["--run-config", f'result-file="{result}"']
            pyproject = app_dir / "pyproject.toml"
            text = pyproject.read_text(encoding="utf-8")
            pyproject.write_text(text.replace("127.0.0.1:9093", f"127.0.0.1:{api}"))
            for _ in range(5):  # the SuperLink may still be starting
                if result.exists():
                    break
                with (logs / "flwr-run").open("ab") as out:
                    subprocess.run(run, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1200)
                if not result.exists():
                    time.sleep(3)
            if not result.exists():
                raise SystemExit(f"Flower did not finish the run; its logs are in {logs}")
            print(json.dumps(json.loads(result.read_text()), indent=1, sort_keys=True))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
