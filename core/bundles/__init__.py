"""App bundles: a deterministic, verifiable archive of an app project.

A bundle is a zip archive whose first entry, ``fedzero-manifest.json``, lists
every other entry with its size and SHA-256, plus the app's name, its
``serverapp``/``clientapp`` references and its default run config. The manifest
is canonical JSON (sorted keys, no spaces, ASCII only), and **the bundle hash is
the SHA-256 of the manifest bytes**. Because the manifest pins every file's
digest, the hash names the app's exact contents, and it does not depend on zip
details (compression, the zlib build, timestamps): two machines that bundle the
same files get the same hash even where their zlib (e.g. zlib-ng) compresses
differently. With the same zlib, the archive bytes are identical too: entries
are sorted by path, timestamps are 1980-01-01 00:00:00, permissions 0o644, no
extra fields or comments, ``ZIP_DEFLATED`` at level 9.

Receiving a bundle (:func:`open_bundle`, :func:`extract_bundle`,
:class:`BundleCache`) verifies everything before anything is written: the
manifest's schema and canonical form, its hash against the expected one, that
the entries are exactly the manifest's files, each entry's path (no absolute
paths, ``..``, backslashes, drive letters, symlinks, directories), declared and
actual sizes against the size cap, and every file's digest. Only then is the
tree extracted, into a temporary directory next to the destination that is
renamed into place.

Trust is by hash only: a node may allow-list hashes (:class:`BundlePolicy`).
Signed bundles (trusting a publisher's key instead of each hash) are out of
scope here.
"""

from ._build import build_bundle
from ._cache import BundleCache, BundlePolicy
from ._format import DEFAULT_EXCLUDES, MANIFEST_NAME, Bundle, BundleError, canonical_json
from ._loader import (
    app_table,
    flatten_config,
    load_client_app,
    load_object,
    load_server_app,
    parse_config_items,
    read_app_spec,
)
from ._verify import extract_bundle, open_bundle, read_manifest

__all__ = [
    "DEFAULT_EXCLUDES",
    "MANIFEST_NAME",
    "Bundle",
    "BundleCache",
    "BundleError",
    "BundlePolicy",
    "app_table",
    "build_bundle",
    "canonical_json",
    "extract_bundle",
    "flatten_config",
    "load_client_app",
    "load_object",
    "load_server_app",
    "open_bundle",
    "parse_config_items",
    "read_app_spec",
    "read_manifest",
]
