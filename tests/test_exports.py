"""Each package's public surface changes only on purpose (trio's test_exports)."""

from __future__ import annotations

import importlib

import pytest

import fedzero.core

CORE = {
    "Array",
    "ArrayRecord",
    "BFLOAT16",
    "Buffer",
    "BundleError",
    "ClientApp",
    "ClosedError",
    "ConfigRecord",
    "ConfigurationError",
    "ConnectionBrokenError",
    "Context",
    "CurveKeys",
    "DEFAULT_TTL",
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
    "PROTOCOL_VERSION",
    "ProtocolError",
    "RecordDict",
    "RoundResult",
    "Scalar",
    "SERVER_NODE_ID",
    "SUPPORTED_DTYPES",
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
}


def test_core_surface_is_pinned() -> None:
    assert set(fedzero.core.__all__) == CORE


FLOWER_APP = {
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
}


def test_flower_surfaces_are_pinned() -> None:
    import fedzero.app
    import fedzero.clientapp
    import fedzero.common
    import fedzero.serverapp

    assert set(fedzero.app.__all__) == FLOWER_APP  # Flower 1.42's flwr.app, name for name
    assert set(fedzero.clientapp.__all__) == {"ClientApp", "fixedclipping_mod", "mod"}
    assert set(fedzero.serverapp.__all__) == {"Grid", "ServerApp", "strategy"}
    assert set(fedzero.common.__all__) >= FLOWER_APP - {"UserConfigValue"} | {"log", "logger"}


@pytest.mark.parametrize(
    "package",
    [
        "core",
        "link",
        "node",
        "aggregation",
        "bench",
        "app",
        "clientapp",
        "clientapp.mod",
        "common",
        "serverapp",
        "serverapp.strategy",
    ],
)
def test_every_exported_name_exists(package: str) -> None:
    module = importlib.import_module(f"fedzero.{package}")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing


def test_link_node_bench_surfaces_are_pinned() -> None:
    import fedzero.bench
    import fedzero.link
    import fedzero.node

    assert set(fedzero.link.__all__) == {"Link", "LinkConfig"}
    assert set(fedzero.node.__all__) == {"NodeAgent", "NodeConfig", "handle_message"}
    assert set(fedzero.bench.__all__) == {
        "BenchError",
        "aggregate_command",
        "main",
        "run_aggregate_bench",
    }
