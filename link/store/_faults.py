"""Faults a test can inject into a real link (honoured only when the variable is set).

``FEDZERO_TEST_FAULTS`` is a comma-separated list of ``name`` or ``name:argument``:

- ``fold_raise_once``: the fold worker's batch that finishes the first round raises
  (that round fails with ``AGGREGATION_FAILED``; the next one aggregates);
- ``fold_die``: the fold worker's thread dies there (the link turns unhealthy);
- ``checkpoint_hold_while:<path>``: the fold worker writes no checkpoint while
  ``<path>`` exists (at most a minute), as on a slow disk; results still go out;
- ``store_fail_while:<path>``: every store commit fails while ``<path>`` exists
  (as on a full disk); deleting the file lets the writer catch up.

Operators never set it; nothing reads it but the fold worker and the store writer.
"""

from __future__ import annotations

import os
from typing import Final

FAULTS_ENV: Final = "FEDZERO_TEST_FAULTS"


def injected_faults() -> dict[str, str]:
    """The test faults set in the environment: ``{name: argument}`` ("" if none)."""
    faults = {}
    for item in os.environ.get(FAULTS_ENV, "").split(","):
        name, _, argument = item.strip().partition(":")
        if name:
            faults[name] = argument
    return faults
