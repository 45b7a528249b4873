"""``--run-config`` as Flower parses it: TOML ``key=value`` pairs, or a ``.toml`` file.

``--run-config "num-server-rounds=2 fraction-evaluate=0.5 name='a, b'"`` (pairs
separated by spaces, values in TOML: ``2`` an int, ``0.5`` a float, ``true`` a
bool, ``"x"`` or ``'x'`` a string, commas and spaces allowed inside quotes), the
option repeated, or ``--run-config path/to/file.toml`` (a file, alone). Nested
tables and dotted keys are flattened with dots (``a.b = 1`` → ``"a.b"``), as
Flower does. Beyond Flower, fedzero also accepts a bare word as a string
(``name=x``) and its older comma form (``a=1,b=2``) for an unquoted value.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import ConfigurationError

if TYPE_CHECKING:
    from .. import UserConfig

# Flower's pattern (flwr.common.config.parse_config_args): key=value, value quoted or not.
_PAIR = re.compile(r"""(\S+?)=('[^']*'|"[^"]*"|\S+)""")
RUN_CONFIG_HELP = "Override run config: 'k=1 k2=\"s, t\"' (TOML values) or a .toml file."

_FORMAT = (
    "use space-separated key=value pairs with TOML values, e.g. "
    "'num-server-rounds=3 lr=0.01 name=\"a, b\"', or one path to a .toml file"
)


def parse_run_config(items: Iterable[str] | None) -> UserConfig:
    """Parse the ``--run-config`` options into a flat config.

    Args:
        items: each ``--run-config`` value, in order (later keys win).

    Returns:
        ``{"num-server-rounds": 2, "lr": 0.01, ...}``.

    Raises:
        ConfigurationError: a malformed pair, a value that is not a scalar, an
            unreadable ``.toml`` file, or a file given alongside pairs.
    """
    given = [item for item in (items or []) if item.strip()]
    if len(given) == 1 and given[0].strip().endswith(".toml"):
        return _from_file(Path(given[0].strip()))
    out: UserConfig = {}
    for item in given:
        if item.strip().endswith(".toml"):
            raise ConfigurationError(f"--run-config {item!r}: a .toml file must be given alone")
        out.update(_parse_item(item))
    return out


def _from_file(path: Path) -> UserConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"--run-config {path}: cannot read it ({exc})") from exc
    from ..bundles import flatten_config  # the bundle code loads numpy: not for --help

    return flatten_config(data, where=str(path))


def _parse_item(item: str) -> UserConfig:
    leftover = _PAIR.sub(" ", item).strip()
    if leftover:
        raise ConfigurationError(f"--run-config {item!r}: {leftover!r} is not key=value; {_FORMAT}")
    out: UserConfig = {}
    for key, raw in _PAIR.findall(item):
        out.update(_parse_pair(key, raw))
    return out


def _parse_pair(key: str, raw: str) -> UserConfig:
    from ..bundles import flatten_config

    try:
        return flatten_config(tomllib.loads(f"{key} = {raw}"), where="--run-config")
    except tomllib.TOMLDecodeError:
        pass
    if raw[0] in "'\"" or not re.fullmatch(r"[A-Za-z0-9_.\-]+", key):
        raise ConfigurationError(f"--run-config {key}={raw}: not valid TOML; {_FORMAT}")
    if "," in raw and "=" in raw:  # fedzero's older form: a=1,b=2
        return _parse_item(f"{key}={raw}".replace(",", " "))
    return {key: raw}  # a bare word is a string (Flower would want it quoted)
