"""ClientApp dispatch by message type, and --run-config parsing."""

from __future__ import annotations

import re

import pytest

from fedzero.core import ClientApp, Context, Message, MetricRecord, RecordDict
from fedzero.core.bundles import parse_config_items


def _app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        return msg.create_reply(RecordDict({"m": MetricRecord({"which": 1})}))

    @app.train("finetune")
    def finetune(msg: Message, ctx: Context) -> Message:
        return msg.create_reply(RecordDict({"m": MetricRecord({"which": 2})}))

    return app


@pytest.mark.parametrize(("message_type", "which"), [("train", 1), ("train.finetune", 2)])
def test_custom_message_types_reach_their_handler(message_type: str, which: int) -> None:
    reply = _app()(Message(RecordDict(), 1, message_type), Context(1, 1))
    assert reply.content["m"]["which"] == which


def test_unknown_type_and_duplicate_handler_are_errors() -> None:
    app = _app()
    with pytest.raises(LookupError, match=re.escape("handles ['train', 'train.finetune']")):
        app(Message(RecordDict(), 1, "evaluate"), Context(1, 1))
    with pytest.raises(ValueError, match="already registered"):
        app.train("finetune")(lambda msg, ctx: msg)


def test_run_config_items_are_typed_like_toml() -> None:
    assert parse_config_items(["num-rounds=3,lr=0.5", "name=x", 'quoted="y z"', "on=true"]) == {
        "num-rounds": 3,
        "lr": 0.5,
        "name": "x",
        "quoted": "y z",
        "on": True,
    }
    with pytest.raises(ValueError, match="not key=value"):
        parse_config_items(["oops"])
