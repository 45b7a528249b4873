"""fedzero.app: the app API under Flower's name (``flwr.app``).

A Flower app's ``from flwr.app import ...`` becomes ``from fedzero.app import ...``;
the names are fedzero's own (:mod:`fedzero.core`), with Flower's signatures.
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
    RecordDict,
    UserConfig,
    UserConfigValue,
)

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
    "RecordDict",
    "UserConfig",
    "UserConfigValue",
]
