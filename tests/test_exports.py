"""Each package's public surface changes only on purpose (trio's test_exports)."""

from __future__ import annotations

import importlib

import pytest

import fedzero.core

CORE = {
    "BFLOAT16",
    "DEFAULT_TTL",
    "PROTOCOL_VERSION",
    "SERVER_NODE_ID",
    "SUPPORTED_DTYPES",
    "ArrayRecord",
    "AuthenticationError",
    "Buffer",
    "ClosedError",
    "ConfigRecord",
    "ConfigurationError",
    "ConnectionBrokenError",
    "Context",
    "DecodeLimits",
    "DeserializationError",
    "Error",
    "ErrorCode",
    "FedzeroError",
    "FedzeroTimeoutError",
    "Message",
    "MessageExpiredError",
    "Metadata",
    "MetricRecord",
    "NDArray",
    "ProtocolError",
    "RecordDict",
    "RoundResult",
    "UnknownNodeError",
    "UnknownRunError",
    "clip_update",
    "configure_logging",
    "proximal_term",
    "decode",
    "encode",
}


def test_core_surface_is_pinned() -> None:
    assert set(fedzero.core.__all__) == CORE


@pytest.mark.parametrize("package", ["core", "link", "node", "aggregation", "bench"])
def test_every_exported_name_exists(package: str) -> None:
    module = importlib.import_module(f"fedzero.{package}")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing
