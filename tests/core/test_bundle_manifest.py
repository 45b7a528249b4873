"""read_manifest: the cheap accept/refuse check the link does on its IO thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedzero.core import BundleError
from fedzero.core.bundles import build_bundle, read_manifest

QUICKSTART = Path(__file__).parent.parent.parent / "examples" / "quickstart"


def test_manifest_of_a_real_bundle() -> None:
    bundle = build_bundle(QUICKSTART)
    manifest = read_manifest(bundle.data, expected_hash=bundle.hash)
    assert manifest["name"] == "quickstart"
    assert manifest["config"]["num-rounds"] == 10


def test_wrong_hash_and_garbage_are_refused() -> None:
    bundle = build_bundle(QUICKSTART)
    with pytest.raises(BundleError, match="expected"):
        read_manifest(bundle.data, expected_hash="0" * 64)
    with pytest.raises(BundleError, match="not a readable bundle"):
        read_manifest(b"not a zip", expected_hash=bundle.hash)
