"""Per-round checkpoints: codec payload frames on disk, read back by safetensors and by us."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from fedzero.core import BFLOAT16, ArrayRecord, DeserializationError, RecordDict, UnknownRunError
from fedzero.core.wire import Buffer, encode_content
from fedzero.link.rounds import (
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)

pytestmark = pytest.mark.timeout(30)


def _model(seed: int = 0, *, bf16: bool = False) -> ArrayRecord:
    rng = np.random.default_rng(seed)
    arrays = {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(4),
        "fc.weight": rng.standard_normal((10, 7)).astype(np.float16),
        "steps": np.asarray(12345, dtype=np.int64),
        "mask": rng.integers(0, 2, size=9).astype(np.bool_),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "ünïcode/name": rng.integers(-5, 5, size=(2, 2)).astype(np.int8),
    }
    if bf16:
        arrays["emb"] = rng.standard_normal((3, 5)).astype(np.float32).astype(BFLOAT16)
    return ArrayRecord(arrays)


def _frames(record: ArrayRecord) -> list[Buffer]:
    _, payload = encode_content(RecordDict({"arrays": record}))
    return payload


def test_save_writes_the_payload_frames_byte_for_byte(tmp_path: Path) -> None:
    frames = _frames(_model())
    path = save_checkpoint(tmp_path, 7, 3, frames)
    assert path == tmp_path / "run-7" / "round-3.safetensors" == checkpoint_path(tmp_path, 7, 3)
    assert path.read_bytes() == b"".join(bytes(memoryview(f)) for f in frames)


def test_round_trip_through_safetensors_numpy_and_ours(tmp_path: Path) -> None:
    model = _model()
    path = save_checkpoint(tmp_path, 1, 1, _frames(model))
    loaded = safetensors.numpy.load_file(str(path))
    assert set(loaded) == set(model)
    for name, arr in model.items():
        assert loaded[name].dtype == arr.dtype
        np.testing.assert_array_equal(loaded[name], arr)
    ours = load_checkpoint(path)
    assert ours == model  # names in saved order, dtypes, shapes, bytes
    assert list(ours) == list(model)
    assert not ours["conv.weight"].flags.writeable


def test_round_trip_through_safetensors_torch_with_bfloat16(tmp_path: Path) -> None:
    model = _model(seed=1, bf16=True)
    path = save_checkpoint(tmp_path, 2, 5, _frames(model))
    loaded = safetensors.torch.load_file(str(path))
    expected = model.to_torch_state_dict()
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        assert loaded[name].dtype == tensor.dtype
        assert torch.equal(loaded[name], tensor), name
    assert loaded["emb"].dtype == torch.bfloat16
    assert load_checkpoint(path) == model


def test_save_replaces_an_existing_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, 1, _frames(_model(0)))
    path = save_checkpoint(tmp_path, 1, 1, _frames(_model(1)))
    assert load_checkpoint(path) == _model(1)
    assert [p.name for p in path.parent.iterdir()] == ["round-1.safetensors"]


def test_crash_mid_write_leaves_no_partial_file_under_the_final_name(tmp_path: Path) -> None:
    # A crash after part of the temporary file was written: only the temporary exists.
    frames = _frames(_model())
    run_dir = tmp_path / "run-4"
    run_dir.mkdir()
    partial = run_dir / ".round-2-abc123.tmp"
    partial.write_bytes(b"".join(bytes(memoryview(f)) for f in frames[:2]))
    assert not checkpoint_path(tmp_path, 4, 2).exists()
    assert list_checkpoints(tmp_path, 4) == []
    with pytest.raises(UnknownRunError, match="run 4 has no checkpoint"):
        latest_checkpoint(tmp_path, 4)
    assert prune_checkpoints(tmp_path, 4, keep_last=0) == [partial]  # sweeps leftovers
    assert list(run_dir.iterdir()) == []


def test_failed_write_keeps_the_old_checkpoint_and_no_temporary(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path, 1, 1, _frames(_model(0)))
    frames: list[object] = [*_frames(_model(1))]
    frames[2] = object()  # not a buffer: the write fails after frame 1 is on disk
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path, 1, 1, frames)  # type: ignore[arg-type]
    assert load_checkpoint(good) == _model(0)
    assert [p.name for p in good.parent.iterdir()] == ["round-1.safetensors"]


def test_save_rejects_frames_that_are_not_a_payload(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no payload frames"):
        save_checkpoint(tmp_path, 1, 1, [])
    with pytest.raises(ValueError, match="safetensors header"):
        save_checkpoint(tmp_path, 1, 1, [b"\x05\x00\x00\x00\x00\x00\x00\x00{}"])
    with pytest.raises(ValueError, match="round must be an int >= 0"):
        save_checkpoint(tmp_path, 1, -1, _frames(_model()))
    assert list(tmp_path.iterdir()) == []


def test_list_latest_and_retention(tmp_path: Path) -> None:
    frames = _frames(_model())
    for rnd in (1, 2, 3, 10, 11):
        save_checkpoint(tmp_path, 3, rnd, frames)
    save_checkpoint(tmp_path, 4, 1, frames)
    assert [r for r, _ in list_checkpoints(tmp_path, 3)] == [1, 2, 3, 10, 11]  # numeric order
    assert latest_checkpoint(tmp_path, 3) == checkpoint_path(tmp_path, 3, 11)
    assert prune_checkpoints(tmp_path, 3, keep_last=0) == []
    deleted = prune_checkpoints(tmp_path, 3, keep_last=2)
    assert sorted(p.name for p in deleted) == [f"round-{r}.safetensors" for r in (1, 2, 3)]
    assert [r for r, _ in list_checkpoints(tmp_path, 3)] == [10, 11]
    assert prune_checkpoints(tmp_path, 3, keep_last=5) == []
    assert [r for r, _ in list_checkpoints(tmp_path, 4)] == [1]  # other runs untouched
    assert list_checkpoints(tmp_path, 99) == []
    assert prune_checkpoints(tmp_path, 99, keep_last=1) == []
    with pytest.raises(ValueError, match="keep_last"):
        prune_checkpoints(tmp_path, 3, keep_last=-1)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda b: b[:5], "too short"),
        (lambda b: b[:-3], "end of the file|needs"),
        (lambda b: b + b"xx", "end of the file"),
        (lambda b: (10**9).to_bytes(8, "little") + b[8:], "exceeds the file size"),
        (lambda b: b[:8] + b"[" + b[9:], "safetensors header"),
    ],
)
def test_load_rejects_corrupt_files(tmp_path: Path, mangle: object, match: str) -> None:
    path = save_checkpoint(tmp_path, 1, 1, _frames(_model()))
    path.write_bytes(mangle(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(DeserializationError, match=match):
        load_checkpoint(path)
