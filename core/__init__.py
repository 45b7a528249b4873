"""fedzero.core: the data model, the wire codec, errors and logging setup."""

from ._apps import ClientApp, ServerApp
from ._array import Array, NDArray, NDArrays
from ._array_record import ArrayRecord
from ._client_helpers import clip_update, proximal_term
from ._context import Context, Scalar, UserConfig, UserConfigValue
from ._dtypes import BFLOAT16, SUPPORTED_DTYPES
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
from ._grid import Grid, run_server_app
from ._message import DEFAULT_TTL, SERVER_NODE_ID, Error, Message, MessageType, Metadata
from ._records import ConfigRecord, MetricRecord, RecordDict
from ._round_result import RoundResult
from .bundles import BundleError
from .runtime import CurveKeys, configure_logging, generate_keys
from .wire import PROTOCOL_VERSION, Buffer, DecodeLimits, decode, encode

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
