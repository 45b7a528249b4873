"""fedzero.link: the link daemon, the hub of a federation."""

from fedzero.link._config import LinkConfig
from fedzero.link._link import Link

__all__ = ["Link", "LinkConfig"]
