"""App bundles: build, verify, cache, and load the apps they hold."""

from ._bundle import (
    DEFAULT_EXCLUDES,
    MANIFEST_NAME,
    Bundle,
    BundleError,
    build_bundle,
    canonical_json,
    extract_bundle,
    open_bundle,
    read_manifest,
)
from ._cache import BundleCache, BundlePolicy
from ._loader import (
    load_client_app,
    load_object,
    load_server_app,
    parse_config_items,
    read_app_spec,
)

__all__ = [
    "DEFAULT_EXCLUDES",
    "MANIFEST_NAME",
    "Bundle",
    "BundleCache",
    "BundleError",
    "BundlePolicy",
    "build_bundle",
    "canonical_json",
    "extract_bundle",
    "load_client_app",
    "load_object",
    "load_server_app",
    "open_bundle",
    "parse_config_items",
    "read_app_spec",
    "read_manifest",
]
