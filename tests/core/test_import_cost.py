"""What each import loads, in a fresh interpreter: heavy modules only where they are used.

``ml_dtypes`` costs about a second, structlog and rich a few hundred
milliseconds, ZeroMQ and the bundle code some tens: a ClientApp's imports load
none of them, and the ``fedzero`` command loads only what its command needs.
Timings are ``fedzero-bench startup``'s business; these tests pin the causes.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

HEAVY = ("ml_dtypes", "structlog", "rich", "zmq", "typer", "pydantic", "fedzero.core.bundles")


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(out.split())


def test_importing_fedzero_core_loads_nothing_but_itself() -> None:
    loaded = loaded_after("import fedzero.core")
    assert sorted(m for m in (*HEAVY, "numpy") if m in loaded) == []


@pytest.mark.parametrize(
    "code",
    [
        "from fedzero.core import ArrayRecord, ClientApp, ConfigRecord, Context, Message, "
        "MetricRecord, RecordDict, decode, encode",
        "from fedzero.core.wire import parse_envelope, control",
    ],
)
def test_the_data_model_and_the_codec_load_nothing_heavy(code: str) -> None:
    loaded = loaded_after(code)
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_ml_dtypes_is_imported_when_a_bfloat16_tensor_arrives() -> None:
    import fedzero.core as core

    def frames(dtype: np.dtype[Any]) -> list[bytes]:
        record = core.ArrayRecord({"w": np.ones(2, np.float32).astype(dtype)})
        msg = core.Message(core.RecordDict({"a": record}), dst_node_id=1, message_type="train")
        return [bytes(f) for f in core.encode(msg)]

    code = (
        "import sys\n"
        "from fedzero.core import decode\n"
        f"decode({frames(np.dtype(np.float32))!r})\n"
        "assert 'ml_dtypes' not in sys.modules, 'a float32 tensor imported ml_dtypes'\n"
        f"arr = decode({frames(core.BFLOAT16)!r}).content['a']['w']\n"
        "assert arr.dtype.name == 'bfloat16' and arr.astype('f4').tolist() == [1.0, 1.0]\n"
    )
    assert "ml_dtypes" in loaded_after(code)


def test_naming_the_lazy_names_gives_the_real_objects() -> None:
    import fedzero.core as core
    from fedzero.core import runtime

    assert core.BFLOAT16.name == "bfloat16"
    assert core.BFLOAT16 in core.SUPPORTED_DTYPES
    assert core.configure_logging is runtime.configure_logging
    assert {"Grid", "BundleError", "BFLOAT16"} <= set(dir(core))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        core.nope  # noqa: B018


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["--help"], set()),
        (["ls", "--link", "http://x"], {"zmq"}),  # refused before connecting: exit 2
    ],
)
def test_the_fedzero_command_loads_what_its_command_needs(
    argv: list[str], allowed: set[str]
) -> None:
    code = (
        "import sys\n"
        f"sys.argv[1:] = {argv!r}\n"
        "from fedzero.core.cli import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
    )
    loaded = loaded_after(code)
    assert sorted(m for m in (*HEAVY, "numpy") if m in loaded and m not in allowed) == []
