"""fedzero.core: the data model, the wire codec, errors and logging setup.

The data model and the codec are imported with the package; the names that
need heavy modules are imported when first used (PEP 562): ``Grid`` and
``run_server_app`` (ZeroMQ, structlog), the daemon plumbing (``CurveKeys``,
``configure_logging``, ``generate_keys``), ``BundleError`` (the bundle code)
and ``BFLOAT16``/``SUPPORTED_DTYPES`` (ml_dtypes, about a second). So a
ClientApp's imports cost about one ``import numpy``.
"""

from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._apps import ClientApp, ServerApp
from ._array import Array, NDArray, NDArrays
from ._array_record import ArrayRecord
from ._client_helpers import clip_update, proximal_term
from ._context import Context, Scalar, UserConfig, UserConfigValue
from ._errors import (
    ClosedError,
    ConfigurationError,
    ConnectionBrokenError,
    DeserializationError,
    ErrorCode,
    FedzeroError,
    FedzeroTimeoutError,
    ProtocolError,
    UnknownNodeError,
    UnknownRunError,
)
from ._message import DEFAULT_TTL, SERVER_NODE_ID, Error, Message, MessageType, Metadata
from ._records import ConfigRecord, MetricRecord, RecordDict
from ._round_result import RoundResult
from .wire import PROTOCOL_VERSION, Buffer, DecodeLimits, decode, encode

if TYPE_CHECKING:  # imported on first use by __getattr__ below
    from ._dtypes import BFLOAT16, SUPPORTED_DTYPES
    from ._grid import Grid, run_server_app
    from .bundles import BundleError
    from .runtime import CurveKeys, configure_logging, generate_keys

__all__ = [
    "BFLOAT16",
    "DEFAULT_TTL",
    "PROTOCOL_VERSION",
    "SERVER_NODE_ID",
    "SUPPORTED_DTYPES",
    "Array",
    "ArrayRecord",
    "Buffer",
    "BundleError",
    "ClientApp",
    "ClosedError",
    "ConfigRecord",
    "ConfigurationError",
    "ConnectionBrokenError",
    "Context",
    "CurveKeys",
    "DecodeLimits",
    "DeserializationError",
    "Error",
    "ErrorCode",
    "FedzeroError",
    "FedzeroTimeoutError",
    "Grid",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "NDArray",
    "NDArrays",
    "ProtocolError",
    "RecordDict",
    "RoundResult",
    "Scalar",
    "ServerApp",
    "UnknownNodeError",
    "UnknownRunError",
    "UserConfig",
    "UserConfigValue",
    "clip_update",
    "configure_logging",
    "decode",
    "encode",
    "generate_keys",
    "proximal_term",
    "run_server_app",
]


def __getattr__(name: str) -> Any:
    """Import a name whose module is heavy on first use, then keep it (PEP 562)."""
    module: ModuleType
    if name in ("BFLOAT16", "SUPPORTED_DTYPES"):
        from . import _dtypes

        module = _dtypes
    elif name in ("Grid", "run_server_app"):
        from . import _grid

        module = _grid
    elif name in ("CurveKeys", "configure_logging", "generate_keys"):
        from . import runtime

        module = runtime
    elif name == "BundleError":
        from . import bundles

        module = bundles
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
