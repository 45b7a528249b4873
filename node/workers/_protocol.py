"""The agent <-> worker protocol: control frames between the pool and its workers.

The agent binds a ROUTER on ``ipc://<private temp dir>/workers``; each worker
connects a DEALER whose routing id is given on its command line
(``run-<run_id>-<serial>``, the serial unique within the pool, so a run
that ends and returns never meets its previous, unreaped worker's id).
Every ZeroMQ message starts with one control frame, a UTF-8 JSON object
``{"fzw": 1, "op": <op>, ...fields}``; a task and a reply are followed by
the frames of a fedzero Message exactly as :func:`fedzero.core.encode`
makes them (sent with ``copy=False``, decoded zero-copy with
:func:`fedzero.core.decode`; no pickle).

Shared memory: when the pool has a segment directory (the default; the worker
gets it as ``--shm-dir``), a payload (frames 1.. of the Message) of at least
64 KiB does not follow the control frame: the sender copies it into one of its
segments (files ``down-<n>`` written by the agent, ``up-<n>`` by the worker, in
the worker's directory; see :mod:`._shm`) and the control frame of a ``task``
or ``reply`` carries ``shm: {"seg": <name>, "sizes": [<bytes of each frame>]}``;
only the Message's header frame follows. Frame i starts at the first multiple
of 64 at or after the end of frame i-1 (frame 1 at offset 0). Every ``task``
and ``reply`` of a worker with a directory also carries ``released`` (names of
the peer's segments none of whose views are alive any more: the peer may write
them again) and ``gone`` (names of the sender's segments it deleted: the peer
drops its mapping). A sender never writes a segment it has not got back as
released, so a receiver's views never change under it.

======================  =====================================================
worker -> agent         fields
======================  =====================================================
``hello``               ``pid``: sent once, on connecting
``reply``               ``shm``, ``released``, ``gone`` (see above); followed
                        by the reply Message frames (or its header frame)
``fatal``               ``reason``: the worker cannot go on (the app does not
                        load, a protocol error) and exits with code 2
======================  =====================================================

======================  =====================================================
agent -> worker         fields
======================  =====================================================
``init``                ``run_id``, ``node_id``, ``node_config``,
                        ``run_config``, ``app_dir``: answer to ``hello``; the
                        worker loads the ClientApp and builds the Context
``update``              ``node_id``, ``run_config``: the agent's view changed
                        (re-registration, a new ``run`` control message)
``task``                ``shm``, ``released``, ``gone`` (see above); followed
                        by the task Message frames (or its header frame);
                        answered by exactly one ``reply``
``stop``                (none): exit after the current task, with code 0
======================  =====================================================
"""

from __future__ import annotations

import json
from typing import Any, Final

from fedzero.core import DeserializationError
from fedzero.core.wire import as_memoryview, loads_strict

WORKER_PROTOCOL: Final = 1
"""Version of the agent <-> worker control header (field ``"fzw"``)."""

EXIT_FATAL: Final = 2
"""Exit code of a worker that could not go on (see the ``fatal`` op)."""


def control_frame(op: str, **fields: Any) -> bytes:
    """Encode one agent <-> worker control frame."""
    return json.dumps({"fzw": WORKER_PROTOCOL, "op": op, **fields}, separators=(",", ":")).encode()


def parse_control(frame: object) -> dict[str, Any]:
    """Parse an agent <-> worker control frame.

    Raises:
        DeserializationError: the frame is not a control header of this protocol
            version (a ``ValueError``).
    """
    header = loads_strict(as_memoryview(frame, 0), what="worker control frame")
    if not isinstance(header, dict) or header.get("fzw") != WORKER_PROTOCOL:
        raise DeserializationError(f"worker control frame: no fzw={WORKER_PROTOCOL}")
    if not isinstance(header.get("op"), str):
        raise DeserializationError("worker control frame: no op")
    return header
