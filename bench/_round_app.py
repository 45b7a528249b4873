"""fedzero-bench round: the ClientApp replies with every received array + 1."""

from __future__ import annotations

from fedzero.core import ArrayRecord, ClientApp, Context, Grid, Message, RecordDict, ServerApp

from ._stats import BenchError

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
    raise BenchError("fedzero-bench round drives the rounds itself")
