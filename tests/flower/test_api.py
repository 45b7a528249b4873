"""Flower's app API under fedzero's names: what Flower app code calls works as in Flower 1.42."""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest

import fedzero.core
from fedzero.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from fedzero.common.logger import log
from fedzero.core import decode, encode


def _received(content: RecordDict, message_type: str = MessageType.TRAIN) -> Message:
    """A message as a ClientApp gets it: encoded and decoded (zero-copy, read-only arrays)."""
    msg = Message(content, 7, message_type)
    msg.metadata.run_id = 3
    return decode(encode(msg))


def test_message_reply_forms() -> None:
    msg = _received(RecordDict({"config": ConfigRecord({"lr": 0.1})}))
    reply = Message(RecordDict({"m": MetricRecord({"loss": 1.0})}), reply_to=msg)
    meta = reply.metadata
    assert (meta.run_id, meta.src_node_id, meta.dst_node_id) == (3, 7, 0)
    assert meta.reply_to_message_id == msg.metadata.message_id
    assert meta.message_type == "train"
    assert Message(content=RecordDict(), reply_to=msg).has_content()
    err = Message(Error(code=3, reason="boom"), reply_to=msg)
    assert err.has_error()
    assert err.error.reason == "boom"
    assert Message(error=Error(code=1), reply_to=msg, ttl=5).metadata.ttl <= 5
    assert msg.create_reply(RecordDict()).metadata.reply_to_message_id == msg.metadata.message_id


def test_message_instruction_forms() -> None:
    a = Message(RecordDict(), 5, MessageType.QUERY, group_id="1", ttl=30)
    b = Message(content=RecordDict(), message_type=MessageType.QUERY, dst_node_id=5)
    c = Message(RecordDict(), dst_node_id=5, message_type="query.stats")
    for m in (a, b, c):
        assert m.metadata.dst_node_id == 5
        assert m.metadata.message_type.startswith("query")
    assert a.metadata.group_id == "1"


@pytest.mark.parametrize(
    "build",
    [
        lambda: Message(RecordDict()),  # no destination, no reply_to
        lambda: Message(Error(code=1), 3, "train"),  # an error is only a reply
        lambda: Message(RecordDict(), 3, "train", reply_to=Message(RecordDict(), 1, "train")),
        lambda: Message(RecordDict(), content=RecordDict(), dst_node_id=1, message_type="train"),
        lambda: Message({"not": "records"}, 3, "train"),
    ],
)
def test_message_refuses_mixed_forms(build: object) -> None:
    with pytest.raises(TypeError, match=r"Message|RecordDict"):
        build()  # type: ignore[operator]


def test_message_type_is_not_instantiable() -> None:
    assert (MessageType.TRAIN, MessageType.EVALUATE, MessageType.QUERY) == (
        "train",
        "evaluate",
        "query",
    )
    with pytest.raises(TypeError):
        MessageType()


def test_received_arrays_are_writable_where_flower_gives_copies() -> None:
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2)]
    msg = _received(RecordDict({"arrays": ArrayRecord(weights)}))
    record = msg.content["arrays"]
    assert not record["0"].flags.writeable  # indexing: zero-copy view of the received frame
    ndarrays = record.to_numpy_ndarrays()  # Flower: fresh arrays, free to modify
    for arr in ndarrays:
        arr += 1
    item = record["0"].numpy()
    item *= 2
    np.testing.assert_array_equal(record["0"], weights[0])  # the record did not change
    np.testing.assert_array_equal(ndarrays[0], weights[0] + 1)
    assert not record.to_numpy_ndarrays(copy=False)[0].flags.writeable


def test_array_record_items_answer_flowers_array_api() -> None:
    record = ArrayRecord([np.arange(4, dtype=np.float32)])
    item = record["0"]
    assert isinstance(item, Array)
    assert isinstance(item, np.ndarray)
    assert item.dtype == "float32"
    assert tuple(item.shape) == (4,)
    assert item.stype == "numpy.ndarray"
    assert type(item.numpy()) is np.ndarray
    buf = io.BytesIO()
    np.save(buf, np.eye(2), allow_pickle=False)
    direct = Array("float64", (2, 2), "numpy.ndarray", buf.getvalue())
    np.testing.assert_array_equal(direct, np.eye(2))
    np.testing.assert_array_equal(np.load(io.BytesIO(direct.tobytes_npy())), np.eye(2))
    from_dict = ArrayRecord({"w": Array(np.ones(3)), "b": Array.from_numpy_ndarray(np.zeros(1))})
    assert list(from_dict) == ["w", "b"]
    with pytest.raises(ValueError, match="data holds"):
        Array("float32", (2, 2), "numpy.ndarray", buf.getvalue())
    with pytest.raises(TypeError, match="stype"):
        Array("float64", (2, 2), "torch.Tensor", buf.getvalue())


def test_array_record_flower_keywords_and_keep_input() -> None:
    arrays = [np.zeros(2), np.ones(3)]
    record = ArrayRecord(numpy_ndarrays=arrays, keep_input=False)
    assert arrays == []
    assert list(record) == ["0", "1"]
    out = record.to_numpy_ndarrays(keep_input=False)
    assert len(out) == 2
    assert len(record) == 0
    with pytest.raises(TypeError, match="more than one"):
        ArrayRecord([np.zeros(1)], numpy_ndarrays=[np.zeros(1)])


def test_context_and_config_records_as_flower_uses_them() -> None:
    ctx = Context(run_id=1, node_id=2, node_config={"partition-id": 0}, run_config={"lr": 0.1})
    ctx.state["model"] = ArrayRecord([np.zeros(1)])
    assert ctx.node_config["partition-id"] == 0
    cfg = ConfigRecord({"selected_features": ["age", "height"]})
    assert _received(RecordDict({"config": cfg})).content["config"]["selected_features"] == [
        "age",
        "height",
    ]


def test_common_logger_logs_like_flowers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fedzero.app"):
        logger = logging.getLogger("fedzero.app")
        logger.propagate = True
        try:
            log(logging.INFO, "Sampled %s nodes (out of %s)", 2, 3)
        finally:
            logger.propagate = False
    assert "Sampled 2 nodes (out of 3)" in caplog.text


def test_flower_surfaces_re_export_fedzero_objects() -> None:
    import fedzero.clientapp
    import fedzero.common
    import fedzero.serverapp
    import fedzero.serverapp.strategy

    assert fedzero.clientapp.ClientApp is fedzero.core.ClientApp
    assert fedzero.serverapp.Grid is fedzero.core.Grid
    assert fedzero.serverapp.strategy.FedAvg.__module__.startswith("fedzero.aggregation")
    assert fedzero.common.ArrayRecord is ArrayRecord


# Flower 1.42's examples/quickstart-numpy/quickstart_numpy/client_app.py, as Flower ships it.
QUICKSTART_NUMPY_CLIENT = """
import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context):
    ndarrays = msg.content["arrays"].to_numpy_ndarrays()
    model = [m + np.random.rand(*m.shape) for m in ndarrays]
    model_record = ArrayRecord(model)
    metrics = {"random_metric": np.random.rand(), "num-examples": 1}
    metric_record = MetricRecord(metrics)
    content = RecordDict({"arrays": model_record, "metrics": metric_record})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context):
    ndarrays = msg.content["arrays"].to_numpy_ndarrays()
    metrics = {"random_metric": np.random.rand(3).tolist(), "num-examples": 1}
    metric_record = MetricRecord(metrics)
    content = RecordDict({"metrics": metric_record})
    return Message(content=content, reply_to=msg)
"""


def test_flowers_quickstart_numpy_client_runs_after_the_sed() -> None:
    source = re.sub(r"\bflwr\b", "fedzero", QUICKSTART_NUMPY_CLIENT)
    namespace: dict[str, object] = {}
    exec(compile(source, "client_app.py", "exec"), namespace)  # noqa: S102 - our own test source
    app = namespace["app"]
    assert isinstance(app, fedzero.core.ClientApp)
    ctx = Context(run_id=3, node_id=7, node_config={}, run_config={})
    for kind in (MessageType.TRAIN, MessageType.EVALUATE):
        msg = _received(RecordDict({"arrays": ArrayRecord([np.zeros(3)])}), kind)
        reply = decode(encode(app(msg, ctx)))
        assert reply.metadata.reply_to_message_id == msg.metadata.message_id
        assert reply.content["metrics"]["num-examples"] == 1
