"""fedzero.core: the data model, the wire codec, errors and logging setup."""

from fedzero.core._apps import ClientApp, ServerApp
from fedzero.core._array_record import ArrayRecord, NDArray
from fedzero.core._bundle import BundleError
from fedzero.core._client_helpers import clip_update, proximal_term
from fedzero.core._codec import PROTOCOL_VERSION, Buffer, decode, encode
from fedzero.core._context import Context
from fedzero.core._dtypes import BFLOAT16, SUPPORTED_DTYPES
from fedzero.core._errors import (
    AuthenticationError,
    ClosedError,
    ConfigurationError,
    ConnectionBrokenError,
    DeserializationError,
    ErrorCode,
    FedzeroError,
    FedzeroTimeoutError,
    MessageExpiredError,
    ProtocolError,
    UnknownNodeError,
    UnknownRunError,
)
from fedzero.core._grid import Grid, run_server_app
from fedzero.core._limits import DecodeLimits
from fedzero.core._logging import configure_logging
from fedzero.core._message import DEFAULT_TTL, SERVER_NODE_ID, Error, Message, Metadata
from fedzero.core._records import ConfigRecord, MetricRecord, RecordDict
from fedzero.core._round_result import RoundResult
from fedzero.core._security import CurveKeys, generate_keys

__all__ = [
    "BFLOAT16",
    "DEFAULT_TTL",
    "PROTOCOL_VERSION",
    "SERVER_NODE_ID",
    "SUPPORTED_DTYPES",
    "ArrayRecord",
    "AuthenticationError",
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
    "MessageExpiredError",
    "Metadata",
    "MetricRecord",
    "NDArray",
    "ProtocolError",
    "RecordDict",
    "RoundResult",
    "ServerApp",
    "UnknownNodeError",
    "UnknownRunError",
    "clip_update",
    "configure_logging",
    "decode",
    "encode",
    "generate_keys",
    "proximal_term",
    "run_server_app",
]
