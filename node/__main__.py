"""``python -m fedzero.node``: the fedzero-node daemon."""

from ._cli import run

run()
