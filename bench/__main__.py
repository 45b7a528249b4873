"""``python -m fedzero.bench``: the ``fedzero-bench`` command."""

from ._cli import main

main()
