"""``python -m fedzero.core.cli``: the ``fedzero`` command."""

from ._main import run

run()
