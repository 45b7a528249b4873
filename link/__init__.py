"""fedzero.link: the link daemon, the hub of a federation."""

from ._config import LinkConfig
from ._link import Link

__all__ = ["Link", "LinkConfig"]
