"""The daemons as systemd runs them: notify protocol, bad configuration, identity."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fedzero.core import Grid
from tests.helpers import ECHO_APP, processes, socket_dir

pytestmark = pytest.mark.timeout(60)


def _datagrams(sock: socket.socket, until: bytes, timeout: float = 30) -> list[bytes]:
    sock.settimeout(timeout)
    out = []
    while True:
        out.append(sock.recv(4096))
        if until in out[-1]:
            return out


def test_link_speaks_the_notify_protocol_and_drains_on_sigterm(tmp_path: Path) -> None:
    with socket_dir() as tmp:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp / "notify"))
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp / "notify"), "WATCHDOG_USEC": "400000"}
        cmd = [sys.executable, "-m", "fedzero.link", "--state-dir", str(tmp / "state")]
        cmd += ["--fleet-address", f"ipc://{tmp}/fleet", "--app-address", f"ipc://{tmp}/app"]
        cmd += ["--control-address", f"ipc://{tmp}/control", "--http-address", "", "--no-warmup"]
        with subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ) as link:
            try:
                ready = _datagrams(notify, b"READY=1")
                assert b"STATUS=serving" in ready[-1]
                assert b"WATCHDOG=1" in b"".join(_datagrams(notify, b"WATCHDOG=1"))
                link.send_signal(signal.SIGTERM)
                assert b"STOPPING=1" in b"".join(_datagrams(notify, b"STOPPING=1"))
                assert link.wait(20) == 0
            finally:
                if link.poll() is None:
                    link.kill()
                notify.close()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--heartbeat-timeout", "0.5", "--heartbeat-interval", "1"], {}, "heartbeat_timeout"),
        ([], {"FEDZERO_LINK_MAX_UPLOAD_MB": "lots"}, "FEDZERO_LINK_MAX_UPLOAD_MB"),
        (["--log-level", "loud"], {}, "log_level"),
    ],
)
def test_bad_configuration_names_the_key_and_starts_nothing(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    cmd = [sys.executable, "-m", "fedzero.link", "--state-dir", str(tmp_path / "state")]
    cmd += ["--control-address", "ipc://" + str(tmp_path / "c"), *args]
    done = subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "state").exists()  # nothing was started or created


def test_bad_config_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "link.toml"
    config.write_text("[link]\nheartbeat-timout = 3\n")
    cmd = [sys.executable, "-m", "fedzero.link", "--config", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "heartbeat-timout" in done.stderr
    assert "link.toml" in done.stderr


def test_a_restarted_node_keeps_its_id() -> None:
    with socket_dir() as tmp, processes() as procs:
        procs.link(tmp)
        ids = []
        cmd = ["-m", "fedzero.node", "--app", str(ECHO_APP), "--link", f"ipc://{tmp}/fleet"]
        cmd += ["--state-dir", str(tmp / "node")]
        for attempt in range(2):
            node = procs.spawn(cmd, tmp / f"node{attempt}.log")
            with Grid(f"ipc://{tmp}/app", connect_timeout=20) as grid:
                ids.append(grid.get_node_ids(min_nodes=1, timeout=30))
            node.send_signal(signal.SIGTERM)
            assert node.wait(20) == 0
        assert ids[0] == ids[1]


@pytest.mark.parametrize("daemon", ["link", "node"])
def test_both_daemons_print_their_effective_configuration(daemon: str, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", f"fedzero.{daemon}", "--print-config", "--log-level", "debug"]
    cmd += ["--state-dir", str(tmp_path / "state")]
    env = {**os.environ, f"FEDZERO_{daemon.upper()}_DRAIN_GRACE": "7"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert f"[{daemon}]" in done.stdout
    assert 'log-level = "debug"  # flag --log-level' in done.stdout
    assert f"drain-grace = 7.0  # env FEDZERO_{daemon.upper()}_DRAIN_GRACE" in done.stdout
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("daemon", ["link", "node"])
def test_both_daemons_refuse_a_bad_value_in_one_line(daemon: str) -> None:
    cmd = [sys.executable, "-m", f"fedzero.{daemon}", "--drain-grace", "-1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith(f"fedzero-{daemon}: {daemon}.drain_grace")
    assert "Traceback" not in done.stderr
