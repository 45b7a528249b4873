"""``python -m fedzero.link``: the fedzero-link daemon."""

from ._cli import run

run()
