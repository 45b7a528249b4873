"""torch <-> ArrayRecord conversion: zero copy, and bfloat16 bit-exact over the wire."""

from __future__ import annotations

import numpy as np
import pytest

from fedzero.core import BFLOAT16, ArrayRecord, Message, RecordDict, decode, encode

torch = pytest.importorskip("torch")


def _wire(rec: ArrayRecord) -> ArrayRecord:
    frames = encode(Message(RecordDict({"a": rec}), 1, "train"))
    got = decode([bytes(memoryview(f).cast("B")) for f in frames]).content["a"]
    assert isinstance(got, ArrayRecord)
    return got


def test_state_dict_shares_memory_both_ways_with_copy_false() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    rec = ArrayRecord(model, copy=False)
    sd = model.state_dict()
    assert list(rec) == list(sd)
    for key, tensor in sd.items():
        assert rec[key].ctypes.data == tensor.data_ptr()
    back = rec.to_torch_state_dict(copy=False)
    for key, tensor in back.items():
        assert tensor.data_ptr() == rec[key].ctypes.data


def test_state_dict_record_is_a_snapshot_as_in_flower() -> None:
    model = torch.nn.Linear(4, 3)
    rec = ArrayRecord(model.state_dict())
    before = rec["weight"].numpy()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()  # moves the parameters in place
    np.testing.assert_array_equal(rec["weight"], before)
    back = rec.to_torch_state_dict()  # writable copies, as Flower's are
    back["weight"] += 1
    np.testing.assert_array_equal(rec["weight"], before)


@pytest.mark.parametrize(
    "dtype",
    [
        torch.bfloat16,
        torch.float16,
        torch.float32,
        torch.float64,
        torch.int8,
        torch.uint8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.bool,
    ],
)
def test_torch_wire_torch_is_bit_exact(dtype: object) -> None:
    gen = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        t = torch.rand(5, 7, generator=gen) > 0.5
    elif dtype.is_floating_point:  # type: ignore[attr-defined]
        t = (torch.randn(5, 7, generator=gen) * 1e3).to(dtype)
    else:
        t = torch.randint(-100 if dtype != torch.uint8 else 0, 100, (5, 7), generator=gen).to(dtype)
    back = _wire(ArrayRecord({"t": t})).to_torch_state_dict()["t"]
    assert back.dtype == t.dtype
    assert torch.equal(back.view(torch.uint8), t.view(torch.uint8))


def test_bfloat16_special_values_bit_exact() -> None:
    bits = torch.tensor([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x7F7F], dtype=torch.int32)
    t = bits.to(torch.int16).view(torch.bfloat16)
    rec = ArrayRecord({"t": t})
    assert rec["t"].dtype == BFLOAT16
    back = _wire(rec).to_torch_state_dict()["t"]
    assert torch.equal(back.view(torch.int16), t.view(torch.int16))


def test_non_contiguous_tensor_is_made_contiguous() -> None:
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
    rec = ArrayRecord({"t": t})
    np.testing.assert_array_equal(rec["t"], t.numpy())


def test_load_state_dict_from_decoded_record() -> None:
    model = torch.nn.Linear(3, 2)
    other = torch.nn.Linear(3, 2)
    other.load_state_dict(_wire(ArrayRecord(model)).to_torch_state_dict())
    assert torch.equal(other.weight, model.weight)
