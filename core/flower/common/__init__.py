"""fedzero.common: what Flower apps import from ``flwr.common``.

``log``/``logger`` (also as ``fedzero.common.logger``), the record and message
types, and Flower's type aliases (``NDArray``, ``NDArrays``, ``Scalar``).
"""

from fedzero.core import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    Metadata,
    MetricRecord,
    NDArray,
    NDArrays,
    RecordDict,
    Scalar,
    UserConfig,
)

from .logger import log, logger

__all__ = [
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "Context",
    "Error",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "NDArray",
    "NDArrays",
    "RecordDict",
    "Scalar",
    "UserConfig",
    "log",
    "logger",
]
