"""fedzero-bench round: the ClientApp replies with every received array + 1.

Self-contained (it imports only ``fedzero.core``): ``fedzero-bench round`` copies
this file into the app project its nodes load, so a node never imports
``fedzero.bench`` (or, through it, Numba).
"""

from __future__ import annotations

from fedzero.core import (
    ArrayRecord,
    ClientApp,
    ConfigurationError,
    Context,
    Grid,
    Message,
    RecordDict,
    ServerApp,
)

app = ClientApp()
server = ServerApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Reply with new arrays (the received ones are read-only views of the frames)."""
    replies = {
        name: ArrayRecord({key: arr + 1 for key, arr in record.items()})
        for name, record in msg.content.array_records.items()
    }
    return msg.create_reply(RecordDict(replies))


@server.main()
def main(grid: Grid, context: Context) -> None:
    """Unused: ``fedzero-bench round`` drives the rounds from its own process."""
    raise ConfigurationError("fedzero-bench round drives the rounds itself")
