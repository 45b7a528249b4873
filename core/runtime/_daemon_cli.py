"""What the daemon commands (``fedzero-link``, ``fedzero-node``) share around their options.

Each daemon's command declares its own flags (each defaulting to None, "not
given") and hands them to a :class:`DaemonCli`, which does the rest the same
way for both: systemd notification from the environment, the layered
configuration (:func:`~fedzero.core.runtime.load_config`: file, environment,
the flags actually given), ``--print-config``, logging, one clear line and exit
code 2 for a configuration error, and the signals (SIGTERM and SIGINT drain,
SIGHUP reloads).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, NoReturn, Protocol, TypeVar

from .._errors import ConfigurationError
from ._logging import configure_logging
from ._settings import load_config, render_config
from ._systemd import Notifier


class DaemonConfig(Protocol):
    """What :class:`DaemonCli` needs of a daemon's configuration dataclass."""

    @property
    def log_level(self) -> str:
        """``debug``, ``info``, ``warning`` or ``error``."""


C = TypeVar("C", bound=DaemonConfig)

_OWN_OPTIONS = ("config", "print_config")


class DaemonCli(Generic[C]):
    """The option handling a daemon command shares with the others.

    Create it first in the command, before anything reads the environment: it
    takes systemd's variables out of it so child processes do not inherit them.

    Args:
        prog: the command's name, which starts every error line (``"fedzero-link"``).
        section: the configuration table and environment infix (``"link"``).
        config_type: the configuration dataclass.
        options: the command's parameters (``locals()`` on entry): ``config``
            (a TOML file or None) and ``print_config`` (bool) are read here;
            every other one that is not None is a flag the user passed.
        rename: option name -> configuration field, where they differ.

    Example:
        >>> cli = DaemonCli("fedzero-link", "link", LinkConfig, locals())
        >>> cfg = cli.load()
        >>> cli.setup(cfg)  # --print-config exits here
    """

    def __init__(
        self,
        prog: str,
        section: str,
        config_type: type[C],
        options: Mapping[str, Any],
        rename: Mapping[str, str] | None = None,
    ) -> None:
        self.notifier = Notifier.from_env(unset_environment=True)
        """Tells systemd about the daemon (a no-op outside a ``Type=notify`` service)."""
        self.prog = prog
        self.section = section
        self.config_type = config_type
        self.config_file: Path | None = options.get("config")
        self.print_config = bool(options.get("print_config"))
        names = rename or {}
        self.flags: dict[str, Any] = {
            names.get(k, k): v
            for k, v in options.items()
            if k not in _OWN_OPTIONS and v is not None
        }
        """The flags the user passed, by configuration field."""

    def load(self) -> C:
        """The configuration from defaults, the file, the environment and the flags.

        A configuration error ends the command (one line on stderr, exit code 2).
        """
        try:
            return self._read()
        except ConfigurationError as exc:
            self.fail(exc)

    def setup(self, config: C) -> None:
        """Print ``config`` and exit if ``--print-config`` was given; else configure logging."""
        if self.print_config:
            print(render_config(config, self.section), flush=True)
            raise SystemExit(0)
        configure_logging(config.log_level)

    def fail(self, error: object) -> NoReturn:
        """End the command: ``<prog>: <error>`` on stderr, exit code 2."""
        print(f"{self.prog}: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2)

    def handle_signals(self, drain: Callable[[], None], reload: Callable[[], None]) -> None:
        """SIGTERM and SIGINT call ``drain``, SIGHUP calls ``reload`` (both must be signal-safe)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: drain())
        signal.signal(signal.SIGHUP, lambda *_: reload())

    def reload_log_level(self) -> None:
        """SIGHUP: re-read the configuration and apply its log level (errors go to stderr)."""
        try:
            configure_logging(self._read().log_level)
        except ConfigurationError as exc:
            print(f"{self.prog}: reload failed: {exc}", file=sys.stderr, flush=True)

    def _read(self) -> C:
        file, flags = self.config_file, self.flags
        return load_config(self.config_type, self.section, config_file=file, overrides=flags)
