"""systemd notify protocol: real AF_UNIX datagram sockets standing in for systemd."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from fedzero.core.runtime import Notifier, watchdog_interval

pytestmark = pytest.mark.timeout(120)


class FakeSystemd:
    """A bound SOCK_DGRAM socket, like the one systemd's $NOTIFY_SOCKET names."""

    def __init__(self, address: str, bind_to: str) -> None:
        self.address = address  # the value of $NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        # A deadline, not a pace: a datagram normally arrives at once, but a child
        # interpreter on a starved machine may take many seconds to start.
        self.sock.settimeout(60.0)

    def recv(self) -> str:
        return self.sock.recv(4096).decode()

    def recv_with_pid(self) -> tuple[str, int]:
        """The datagram and the sender's pid (what NotifyAccess=main checks)."""
        creds = struct.calcsize("3i")
        data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("3i", payload[:creds])
                return data.decode(), pid
        raise AssertionError("no SCM_CREDENTIALS")

    def assert_empty(self) -> None:
        self.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            self.sock.recv(4096)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to ~108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="fz-sd-") as name:
        yield Path(name)


@pytest.fixture
def systemd(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    path = str(short_dir / "notify")
    fake = FakeSystemd(path, path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield fake
    fake.sock.close()


@pytest.fixture
def abstract_systemd(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    name = f"fedzero-test-{os.getpid()}-{time.monotonic_ns()}"
    fake = FakeSystemd("@" + name, "\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield fake
    fake.sock.close()


def test_ready_with_status(systemd: FakeSystemd) -> None:
    assert Notifier.from_env().ready("serving fleet")
    assert systemd.recv() == "READY=1\nSTATUS=serving fleet"


def test_each_message(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env()
    assert notifier.enabled
    assert notifier.ready()
    assert systemd.recv() == "READY=1"
    assert notifier.status("3 nodes online\nround 4")
    assert systemd.recv() == "STATUS=3 nodes online round 4"  # one line, always
    assert notifier.watchdog()
    assert systemd.recv() == "WATCHDOG=1"
    assert notifier.stopping("draining")
    assert systemd.recv() == "STOPPING=1\nSTATUS=draining"
    assert notifier.extend_timeout(1.5)
    assert systemd.recv() == "EXTEND_TIMEOUT_USEC=1500000"
    assert notifier.send("ERRNO=5")
    assert systemd.recv() == "ERRNO=5"
    systemd.assert_empty()


def test_reloading_sends_monotonic_usec(systemd: FakeSystemd) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier.from_env().reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = systemd.recv().split("\n")
    assert first == "RELOADING=1"
    key, _, usec = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(usec) <= after


def test_abstract_socket(abstract_systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env()
    assert notifier.address == abstract_systemd.address
    assert notifier.ready("up")
    assert abstract_systemd.recv() == "READY=1\nSTATUS=up"


def test_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier.from_env()
    assert not notifier.enabled
    assert notifier.address is None
    calls = (
        notifier.ready("x"),
        notifier.status("x"),
        notifier.stopping(),
        notifier.watchdog(),
        notifier.reloading(),
        notifier.extend_timeout(1),
    )
    assert calls == (False,) * 6


def test_send_failure_warns_once_and_never_raises(short_dir: Path) -> None:
    notifier = Notifier(str(short_dir / "nobody-listens"))
    with capture_logs() as logs:
        assert not notifier.ready()
        assert not notifier.watchdog()
    assert [e["event"] for e in logs] == ["systemd_notify_failed"]
    assert logs[0]["log_level"] == "warning"


def test_unsupported_address_is_a_no_op() -> None:
    with capture_logs() as logs:
        notifier = Notifier("vsock:2:1234")
    assert not notifier.enabled
    assert not notifier.ready()
    assert [e["event"] for e in logs] == ["systemd_notify_socket_unsupported"]


def test_extend_timeout_rejects_non_positive(systemd: FakeSystemd) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        Notifier.from_env().extend_timeout(0)


def test_unset_environment(systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_env(unset_environment=True)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        assert key not in os.environ
    assert notifier.watchdog_interval == 15.0
    assert notifier.watchdog()  # still works: it read them first
    assert systemd.recv() == "WATCHDOG=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
        ({"WATCHDOG_USEC": "1000"}, 0.0005),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": ""}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected
    assert Notifier.from_env({"NOTIFY_SOCKET": "/x", **env}).watchdog_interval == expected


def test_watchdog_interval_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0


def test_a_daemon_process_notifies(systemd: FakeSystemd) -> None:
    """What systemd sees: a datagram from the service's main process."""
    code = "from fedzero.core.runtime import Notifier; Notifier.from_env().ready('serving')"
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ})
    try:
        data, pid = systemd.recv_with_pid()
    finally:
        assert proc.wait(timeout=60) == 0
    assert data == "READY=1\nSTATUS=serving"
    assert pid == proc.pid  # NotifyAccess=main accepts it


def test_a_full_queue_keeps_state_changes_in_order_and_drops_pings(
    systemd: FakeSystemd,
) -> None:
    """The kernel queues few datagrams (net.unix.max_dgram_qlen); state survives it."""
    notifier = Notifier(systemd.address)
    sent = 0
    while notifier.watchdog():  # fill the queue while "systemd" does not read
        sent += 1
        assert sent < 100_000, "the notify queue never filled"
    assert not notifier.status("unhealthy: the fold worker thread died")
    assert not notifier.stopping()
    assert not notifier.watchdog()  # dropped: it must not overtake the status
    systemd.sock.settimeout(60.0)  # a deadline: the retry thread sends them once there is room
    got = [systemd.recv() for _ in range(sent + 2)]
    assert got[:sent] == ["WATCHDOG=1"] * sent
    assert got[sent:] == ["STATUS=unhealthy: the fold worker thread died", "STOPPING=1"]
    assert notifier.watchdog()  # the queue has room again: pings flow
    assert systemd.recv() == "WATCHDOG=1"
