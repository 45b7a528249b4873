"""``python -m fedzero.node``: the fedzero-node daemon."""

from fedzero.node._cli import run

run()
