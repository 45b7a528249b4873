"""``python -m fedzero.link``: the fedzero-link daemon."""

from fedzero.link._cli import run

run()
