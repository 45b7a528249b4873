"""The systemd units and example configs in examples/systemd/ say what they should."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from fedzero.core.runtime import load_config
from fedzero.link import LinkConfig
from fedzero.node import NodeConfig

pytestmark = pytest.mark.timeout(120)  # a safety net, not a pace: starved machines are slow

UNITS = Path(__file__).parent.parent / "examples" / "systemd"
Unit = dict[str, list[tuple[str, str]]]

COMMON = {
    "Unit": {
        "After": "network-online.target",
        "Wants": "network-online.target",
    },
    "Service": {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Restart": "on-failure",
        "RestartSec": "2",
        "TimeoutStopSec": "60",
        "KillMode": "mixed",
        "User": "fedzero",
        "StateDirectory": "fedzero",
        "ConfigurationDirectory": "fedzero",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "no",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
    },
    "Install": {"WantedBy": "multi-user.target"},
}


def parse_unit(path: Path) -> Unit:
    """[section] → [(key, value)] in order; repeated keys kept (systemd allows them)."""
    unit: Unit = {}
    section = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not key=value: {raw!r}"
        assert section is not None, f"{path.name}:{number}: outside a section"
        unit[section].append((key.strip(), value.strip()))
    return unit


def last(unit: Unit, section: str, key: str) -> str | None:
    values = [v for k, v in unit.get(section, []) if k == key]
    return values[-1] if values else None


@pytest.mark.parametrize("name", ["link", "node"])
def test_unit_directives(name: str) -> None:
    unit = parse_unit(UNITS / f"fedzero-{name}.service")
    for section, expected in COMMON.items():
        for key, value in expected.items():
            assert last(unit, section, key) == value, f"[{section}] {key}"
    assert last(unit, "Service", "ExecStart") == (
        f"/opt/fedzero/.venv/bin/fedzero-{name} --config /etc/fedzero/{name}.toml"
    )
    environment = [v for k, v in unit["Service"] if k == "Environment"]
    assert "PYTHONUNBUFFERED=1" in environment  # else journald gets log lines late


def test_link_only_directives() -> None:
    link = parse_unit(UNITS / "fedzero-link.service")
    node = parse_unit(UNITS / "fedzero-node.service")
    assert last(link, "Service", "LimitNOFILE") == "65536"
    assert last(node, "Service", "LimitNOFILE") is None


def test_link_caches_compiled_kernels_in_its_cache_directory() -> None:
    """The venv is read-only under ProtectSystem=strict: kernels go to CacheDirectory=."""
    link = parse_unit(UNITS / "fedzero-link.service")
    assert last(link, "Service", "CacheDirectory") == "fedzero"
    environment = [v for k, v in link["Service"] if k == "Environment"]
    assert "FEDZERO_CACHE_DIR=%C/fedzero" in environment


def test_drain_grace_fits_in_the_stop_timeout() -> None:
    unit = parse_unit(UNITS / "fedzero-link.service")
    config = tomllib.loads((UNITS / "link.toml").read_text())
    assert config["link"]["drain-grace"] < float(last(unit, "Service", "TimeoutStopSec") or 0)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
@pytest.mark.parametrize("name", ["link", "node"])
def test_systemd_analyze_verify(tmp_path: Path, name: str) -> None:
    # verify insists that ExecStart's binary exists: point it at /bin/true.
    text = (UNITS / f"fedzero-{name}.service").read_text()
    unit = tmp_path / f"fedzero-{name}.service"
    unit.write_text(re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", text))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # Unknown keys and bad values are only warnings ("...: Unknown key ..., ignoring").
    assert unit.name not in output, output


# --- example configs: every key the daemons accept, loadable by the settings loader -----


@pytest.mark.parametrize(("name", "keys"), [("link", LinkConfig), ("node", NodeConfig)])
def test_example_config_has_every_key_and_loads(name: str, keys: type) -> None:
    path = UNITS / f"{name}.toml"
    text = path.read_text()
    expected = {f.name.replace("_", "-") for f in dataclasses.fields(keys)}
    # every key appears, set or commented out ("# node-id = 7"), and each has a comment above
    written = set(re.findall(r"(?m)^(?:# )?([a-z-]+) = ", text))
    assert written == expected
    lines = text.splitlines()
    for number, line in enumerate(lines):
        key = re.match(r"(?:# )?([a-z-]+) = ", line)
        if key:
            above = lines[number - 1]
            assert above.startswith("# "), f"{key[1]} has no comment"
            assert not re.match(r"# [a-z-]+ = ", above), f"{key[1]} has no comment"
    config: object = load_config(keys, name, config_file=path, environ={})
    assert set(tomllib.loads(text)[name]) <= expected
    assert config != keys()
