"""fedzero.core: the data model, the wire codec, errors and logging setup.

Every name is imported when first used (PEP 562, see ``_lazy``): ``import
fedzero.core`` costs nothing, a ClientApp's names load numpy and the data
model, ``Grid`` adds ZeroMQ and structlog, and ``ml_dtypes`` (about a second)
comes only with a bfloat16 array or ``BFLOAT16``. The ``fedzero`` command, a
sub-package, starts without numpy.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_names

if TYPE_CHECKING:
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

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "Array": "._array",
            "ArrayRecord": "._array_record",
            "BFLOAT16": "._dtypes",
            "Buffer": ".wire",
            "BundleError": ".bundles",
            "ClientApp": "._apps",
            "ClosedError": "._errors",
            "ConfigRecord": "._records",
            "ConfigurationError": "._errors",
            "ConnectionBrokenError": "._errors",
            "Context": "._context",
            "CurveKeys": ".runtime",
            "DEFAULT_TTL": "._message",
            "DecodeLimits": ".wire",
            "DeserializationError": "._errors",
            "Error": "._message",
            "ErrorCode": "._errors",
            "FedzeroError": "._errors",
            "FedzeroTimeoutError": "._errors",
            "Grid": "._grid",
            "Message": "._message",
            "MessageType": "._message",
            "Metadata": "._message",
            "MetricRecord": "._records",
            "NDArray": "._array",
            "NDArrays": "._array",
            "PROTOCOL_VERSION": ".wire",
            "ProtocolError": "._errors",
            "RecordDict": "._records",
            "RoundResult": "._round_result",
            "SERVER_NODE_ID": "._message",
            "SUPPORTED_DTYPES": "._dtypes",
            "Scalar": "._context",
            "ServerApp": "._apps",
            "UnknownNodeError": "._errors",
            "UnknownRunError": "._errors",
            "UserConfig": "._context",
            "UserConfigValue": "._context",
            "clip_update": "._client_helpers",
            "configure_logging": ".runtime",
            "decode": ".wire",
            "encode": ".wire",
            "generate_keys": ".runtime",
            "proximal_term": "._client_helpers",
            "run_server_app": "._grid",
        },
    )
