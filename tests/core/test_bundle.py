"""App bundles: deterministic builds, and verification that refuses every bad archive."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import struct
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedzero.core import ConfigurationError
from fedzero.core.bundles import (
    DEFAULT_EXCLUDES,
    MANIFEST_NAME,
    Bundle,
    BundleCache,
    BundleError,
    BundlePolicy,
    build_bundle,
    canonical_json,
    extract_bundle,
    open_bundle,
)

pytestmark = pytest.mark.timeout(120)  # a safety net, not a pace: starved machines are slow

PYPROJECT = """\
[project]
name = "demo-app"
version = "1.0.0"

[tool.fedzero.app]
serverapp = "demo.server:app"
clientapp = "demo.client:app"
{extra}
[tool.fedzero.app.config]
num-rounds = 3
lr = 0.5
tag = "x"
"""


def make_app(root: Path, files: dict[str, bytes] | None = None, extra: str = "") -> Path:
    """An app project with a few files (paths relative to ``root``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(extra=extra))
    files = {"demo/__init__.py": b"", "demo/server.py": b"app = 1\n"} if files is None else files
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def bundled(bundle: Bundle) -> list[str]:
    return [f["path"] for f in bundle.manifest["files"]]


# ------------------------------------------------------------------ building


def test_build_is_deterministic_and_independent_of_mtime_mode_and_folder(tmp_path: Path) -> None:
    app = make_app(tmp_path / "a", {"demo/__init__.py": b"", "demo/task.py": b"x = 1\n" * 100})
    first, second = build_bundle(app), build_bundle(app)
    assert first.data == second.data
    assert first.hash == second.hash

    copy = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(app, copy)
    for path in copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
        if path.is_file():
            path.chmod(0o755)
    other = build_bundle(copy)
    assert other.data == first.data
    assert other.hash == first.hash


def test_hash_is_pinned() -> None:
    """The hash depends only on the manifest: the same files give it on any machine."""
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(Path(tmp), {"demo/__init__.py": b"", "demo/server.py": b"app = 1\n"})
        bundle = build_bundle(app)
    assert bundle.hash == hashlib.sha256(canonical_json(bundle.manifest)).hexdigest()
    assert bundle.hash == "8ad20d126cbc5d4329db200edc07b8d7b0eb5cabc59c6929aeca45030b5beb03"


def test_archive_layout(tmp_path: Path) -> None:
    bundle = build_bundle(make_app(tmp_path))
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as archive:
        infos = archive.infolist()
        raw = archive.read(MANIFEST_NAME)
    assert [i.filename for i in infos] == [MANIFEST_NAME, *sorted(bundled(bundle))]
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.external_attr >> 16 == 0o100644
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.extra == b""
        assert info.comment == b""
    assert raw == canonical_json(json.loads(raw))
    assert b" " not in raw
    assert hashlib.sha256(raw).hexdigest() == bundle.hash
    assert bundle.manifest == {
        "format": 1,
        "name": "demo-app",
        "files": [
            {"path": "demo/__init__.py", "size": 0, "sha256": hashlib.sha256(b"").hexdigest()},
            {
                "path": "demo/server.py",
                "size": 8,
                "sha256": hashlib.sha256(b"app = 1\n").hexdigest(),
            },
            {
                "path": "pyproject.toml",
                "size": len(PYPROJECT.format(extra="")),
                "sha256": hashlib.sha256(PYPROJECT.format(extra="").encode()).hexdigest(),
            },
        ],
        "serverapp": "demo.server:app",
        "clientapp": "demo.client:app",
        "config": {"num-rounds": 3, "lr": 0.5, "tag": "x"},
    }
    assert (bundle.name, bundle.serverapp, bundle.clientapp) == (
        "demo-app",
        "demo.server:app",
        "demo.client:app",
    )


def test_write_names_the_file_by_name_and_hash(tmp_path: Path) -> None:
    bundle = build_bundle(make_app(tmp_path / "app"))
    path = bundle.write(tmp_path / "out")
    assert path.name == f"demo-app-{bundle.hash[:12]}.fzb"
    assert path.read_bytes() == bundle.data
    assert [p.name for p in (tmp_path / "out").iterdir()] == [path.name]


def test_default_excludes(tmp_path: Path) -> None:
    junk = [
        ".git/config",
        ".venv/bin/python",
        ".env",
        "demo/.hidden",
        "__pycache__/x.cpython-311.pyc",
        "demo/__pycache__/server.cpython-311.pyc",
        "demo/old.pyc",
        "demo.egg-info/PKG-INFO",
        "old-1234.fzb",
        "build/lib/demo.py",
        "dist/demo.whl",
    ]
    keep = ["demo/__init__.py", "demo/build/step.py", "demo/dist.py", "data/train.csv"]
    app = make_app(tmp_path, dict.fromkeys(junk + keep, b"x"))
    (app / ".venv" / "lib64").symlink_to("lib")  # symlinks in excluded folders are fine
    assert bundled(build_bundle(app)) == sorted([*keep, "pyproject.toml"])
    assert ".*" in DEFAULT_EXCLUDES


def test_include_and_exclude_patterns(tmp_path: Path) -> None:
    files = dict.fromkeys(
        ["demo/a.py", "demo/b.py", "demo/notes.txt", "data/x.csv", "data/raw/y.csv", "scratch.py"],
        b"1",
    )
    app = make_app(
        tmp_path, files, 'include = ["demo/", "*.csv"]\nexclude = ["data/raw/", "b.py"]\n'
    )
    assert bundled(build_bundle(app)) == [
        "data/x.csv",
        "demo/a.py",
        "demo/notes.txt",
        "pyproject.toml",
    ]


def test_bad_patterns_are_configuration_errors(tmp_path: Path) -> None:
    app = make_app(tmp_path, extra='include = "*.py"\n')
    with pytest.raises(ConfigurationError, match=r"tool\.fedzero\.app\.include"):
        build_bundle(app)


def test_size_cap_names_total_and_cap(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"demo/big.bin": b"x" * 5000})
    total = 5000 + len(PYPROJECT.format(extra=""))
    with pytest.raises(ConfigurationError, match=rf"total {total} bytes, over the cap of 4096"):
        build_bundle(app, max_bytes=4096)
    assert build_bundle(app, max_bytes=total).manifest["files"]


@pytest.mark.parametrize("target_is_dir", [False, True])
def test_symlinks_are_refused(tmp_path: Path, target_is_dir: bool) -> None:
    app = make_app(tmp_path / "app")
    target = tmp_path / ("outside" if target_is_dir else "secret.txt")
    if target_is_dir:
        target.mkdir()
    else:
        target.write_text("secret")
    (app / "demo" / "link").symlink_to(target)
    with pytest.raises(ConfigurationError, match=r"demo/link: symlinks cannot be bundled"):
        build_bundle(app)


def test_reserved_manifest_name_is_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path, {MANIFEST_NAME: b"{}"})
    with pytest.raises(ConfigurationError, match="reserved name"):
        build_bundle(app)


def test_config_that_json_cannot_hold_is_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    text = (app / "pyproject.toml").read_text() + "when = 1979-05-27T07:32:00Z\n"
    (app / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigurationError, match="config"):
        build_bundle(app)


# ------------------------------------------------------------ round trip, cache


def test_round_trip_extract_and_verify(tmp_path: Path) -> None:
    files = {"demo/__init__.py": b"", "demo/deep/er/x.bin": bytes(range(256)) * 10}
    bundle = build_bundle(make_app(tmp_path / "app", files))
    opened = open_bundle(bundle.data, expected_hash=bundle.hash)
    assert (opened.hash, opened.manifest, opened.name) == (bundle.hash, bundle.manifest, "demo-app")
    assert open_bundle(bundle.data, expected_hash=None).hash == bundle.hash

    dest = tmp_path / "out" / "tree"
    extract_bundle(bundle.data, dest, expected_hash=bundle.hash)
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data
    assert (dest / MANIFEST_NAME).read_bytes() == canonical_json(bundle.manifest)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tree"]  # no temp left

    with pytest.raises(BundleError, match="already exists and is not empty"):
        extract_bundle(bundle.data, dest, expected_hash=bundle.hash)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tree"]


def test_cache_install_is_idempotent_and_verifiable(tmp_path: Path) -> None:
    bundle = build_bundle(make_app(tmp_path / "app"))
    cache = BundleCache(tmp_path / "cache")
    assert not cache.has(bundle.hash)
    path = cache.install(bundle.data, bundle.hash)
    assert path == cache.path_for(bundle.hash) == tmp_path / "cache" / bundle.hash
    assert cache.has(bundle.hash)
    assert cache.verify(bundle.hash)
    assert cache.install(bundle.data, bundle.hash) == path

    (path / "demo" / "__pycache__").mkdir()
    (path / "demo" / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\0")
    assert cache.verify(bundle.hash)  # what Python writes on import is ignored
    (path / "demo" / "server.py").write_bytes(b"app = 2\n")
    assert not cache.verify(bundle.hash)
    (path / "demo" / "server.py").write_bytes(b"app = 1\n")
    assert cache.verify(bundle.hash)
    (path / "demo" / "extra.py").write_bytes(b"")
    assert not cache.verify(bundle.hash)

    cache.remove(bundle.hash)
    assert not cache.has(bundle.hash)
    assert list((tmp_path / "cache").iterdir()) == []
    cache.remove(bundle.hash)  # absent: no error
    assert not cache.verify(bundle.hash)


def test_cache_refuses_data_for_another_hash(tmp_path: Path) -> None:
    bundle = build_bundle(make_app(tmp_path / "app"))
    cache = BundleCache(tmp_path / "cache")
    with pytest.raises(BundleError, match="expected"):
        cache.install(bundle.data, "0" * 64)
    with pytest.raises(BundleError, match="not 64 lowercase hex"):
        cache.path_for("../etc")
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_concurrent_installs_of_one_bundle(tmp_path: Path) -> None:
    bundle = build_bundle(
        make_app(tmp_path / "app", {f"demo/m{i}.py": b"x" * i for i in range(50)})
    )
    caches = [BundleCache(tmp_path / "cache") for _ in range(8)]  # as if 8 processes
    barrier = threading.Barrier(len(caches))
    paths: list[Path] = []
    errors: list[BaseException] = []

    def install(cache: BundleCache) -> None:
        barrier.wait(timeout=10)
        try:
            paths.append(cache.install(bundle.data, bundle.hash))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=install, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []
    assert set(paths) == {tmp_path / "cache" / bundle.hash}
    assert caches[0].verify(bundle.hash)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [bundle.hash]


def test_policy(tmp_path: Path) -> None:
    good, bad = "a" * 64, "b" * 64
    BundlePolicy().check(bad)
    policy = BundlePolicy(frozenset({good.upper()}))
    policy.check(good)
    with pytest.raises(BundleError, match=f"bundle {bad} is not in this node's allow-list"):
        policy.check(bad)
    listing = tmp_path / "allowed.txt"
    listing.write_text(f"# allowed bundles\n{good}  # quickstart\n\n")
    assert BundlePolicy.from_file(listing).allowed_hashes == frozenset({good})
    with pytest.raises(ConfigurationError, match="not 64 hex"):
        BundlePolicy(frozenset({"abc"}))


# ------------------------------------------------------------- hostile archives


def _manifest(files: dict[str, bytes], **changes: Any) -> dict[str, Any]:
    return {
        "format": 1,
        "name": "evil",
        "files": [
            {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for p, d in sorted(files.items())
        ],
        "serverapp": "evil.server:app",
        "clientapp": "evil.client:app",
        "config": {},
        **changes,
    }


def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _archive(files: dict[str, bytes], manifest: dict[str, Any] | bytes | None = None) -> bytes:
    raw = manifest if isinstance(manifest, bytes) else canonical_json(manifest or _manifest(files))
    return _zip([(MANIFEST_NAME, raw), *sorted(files.items())])


def _hash_of(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return hashlib.sha256(archive.read(archive.infolist()[0])).hexdigest()


def _symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _lie_about_size(data: bytes, name: str, size: int) -> bytes:
    """Patch the uncompressed size of ``name`` in its local and central headers."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    struct.pack_into("<I", out, info.header_offset + 22, size)
    central = out.find(b"PK\x01\x02")
    while central >= 0:
        name_len = struct.unpack_from("<H", out, central + 28)[0]
        if out[central + 46 : central + 46 + name_len] == name.encode():
            struct.pack_into("<I", out, central + 24, size)
            return bytes(out)
        central = out.find(b"PK\x01\x02", central + 4)
    raise AssertionError(f"no central directory entry for {name}")


FILES = {"evil/__init__.py": b"", "pyproject.toml": b"[project]\n"}


def _wrong_hash() -> tuple[bytes, str]:
    return _archive(FILES), "f" * 64


def _tampered_content() -> tuple[bytes, str]:
    manifest = _manifest(FILES)
    data = _zip(
        [
            (MANIFEST_NAME, canonical_json(manifest)),
            ("evil/__init__.py", b""),
            ("pyproject.toml", b"[evil---]\n"),
        ]
    )
    return data, _hash_of(data)


def _extra_entry() -> tuple[bytes, str]:
    data = _zip(
        [
            (MANIFEST_NAME, canonical_json(_manifest(FILES))),
            *sorted(FILES.items()),
            ("zzz.py", b"import os"),
        ]
    )
    return data, _hash_of(data)


def _missing_entry() -> tuple[bytes, str]:
    data = _zip(
        [
            (MANIFEST_NAME, canonical_json(_manifest(FILES))),
            ("pyproject.toml", FILES["pyproject.toml"]),
        ]
    )
    return data, _hash_of(data)


def _duplicate_entry() -> tuple[bytes, str]:
    entries = [(MANIFEST_NAME, canonical_json(_manifest(FILES))), *sorted(FILES.items())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        data = _zip([*entries, ("pyproject.toml", FILES["pyproject.toml"])])
    return data, _hash_of(data)


def _entry_named(name: str) -> Callable[[], tuple[bytes, str]]:
    def make() -> tuple[bytes, str]:
        files = {**FILES, name: b"pwned"}
        manifest = _manifest(FILES)
        manifest["files"].append(
            {"path": name, "size": 5, "sha256": hashlib.sha256(b"pwned").hexdigest()}
        )
        manifest["files"].sort(key=lambda f: f["path"])
        data = _archive(files, canonical_json(manifest))
        return data, _hash_of(data)

    return make


def _unlisted_entry_named(name: str) -> Callable[[], tuple[bytes, str]]:
    def make() -> tuple[bytes, str]:
        data = _zip(
            [
                (MANIFEST_NAME, canonical_json(_manifest(FILES))),
                *sorted(FILES.items()),
                (name, b"pwned"),
            ]
        )
        return data, _hash_of(data)

    return make


def _symlink() -> tuple[bytes, str]:
    files = {**FILES, "evil/link": b"/etc/passwd"}
    data = _zip(
        [
            (MANIFEST_NAME, canonical_json(_manifest(files))),
            ("evil/__init__.py", b""),
            (_symlink_entry("evil/link"), b"/etc/passwd"),
            ("pyproject.toml", FILES["pyproject.toml"]),
        ]
    )
    return data, _hash_of(data)


def _directory_entry() -> tuple[bytes, str]:
    data = _zip(
        [(MANIFEST_NAME, canonical_json(_manifest(FILES))), ("evil/", b""), *sorted(FILES.items())]
    )
    return data, _hash_of(data)


def _bomb_declared_small() -> tuple[bytes, str]:
    """The manifest and the zip headers say 10 bytes; the entry inflates to 4 MiB."""
    bomb = b"\0" * (4 * 2**20)
    manifest = _manifest({**FILES, "evil/bomb.bin": bomb[:10]})
    data = _zip(
        [
            (MANIFEST_NAME, canonical_json(manifest)),
            ("evil/__init__.py", b""),
            ("evil/bomb.bin", bomb),
            ("pyproject.toml", FILES["pyproject.toml"]),
        ]
    )
    data = _lie_about_size(data, "evil/bomb.bin", 10)
    return data, _hash_of(data)


def _bomb_declared_large() -> tuple[bytes, str]:
    """Honest headers, but the files add up to more than the cap (64 KiB here)."""
    files = {**FILES, "evil/bomb.bin": b"\0" * (2**16 + 1)}
    data = _archive(files)
    return data, _hash_of(data)


def _manifest_not_json() -> tuple[bytes, str]:
    data = _archive(FILES, b"{not json")
    return data, _hash_of(data)


def _manifest_not_canonical() -> tuple[bytes, str]:
    data = _archive(FILES, json.dumps(_manifest(FILES), indent=1).encode())
    return data, _hash_of(data)


def _manifest_duplicate_key() -> tuple[bytes, str]:
    raw = canonical_json(_manifest(FILES))
    data = _archive(FILES, raw[:-1] + b',"name":"x"}')
    return data, _hash_of(data)


def _manifest_bad_schema() -> tuple[bytes, str]:
    data = _archive(FILES, canonical_json(_manifest(FILES, format=2)))
    return data, _hash_of(data)


def _manifest_not_first() -> tuple[bytes, str]:
    data = _zip([*sorted(FILES.items()), (MANIFEST_NAME, canonical_json(_manifest(FILES)))])
    return data, _hash_of(data)


def _corrupt_deflate_stream() -> tuple[bytes, str]:
    files = {**FILES, "evil/data.bin": bytes(range(256)) * 64}
    data = bytearray(_archive(files))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("evil/data.bin")
    start = info.header_offset + 30 + len(info.filename)
    data[start : start + 8] = b"\xff" * 8  # garbage where the deflate stream starts
    return bytes(data), _hash_of(bytes(data))


def _not_a_zip() -> tuple[bytes, str]:
    return b"PK\x03\x04 certainly not a zip", "0" * 64


HOSTILE: dict[str, tuple[Callable[[], tuple[bytes, str]], str]] = {
    "wrong hash": (_wrong_hash, "bundle hash is"),
    "tampered content": (_tampered_content, "content does not match|declared size"),
    "extra entry": (_extra_entry, r"extra: \['zzz.py'\]"),
    "missing entry": (_missing_entry, r"missing: \['evil/__init__.py'\]"),
    "duplicate entry": (_duplicate_entry, r"duplicated: \['pyproject.toml'\]"),
    "dot-dot": (_entry_named("../evil.py"), "path escapes the bundle"),
    "dot-dot inside": (_entry_named("evil/../../x.py"), "path escapes the bundle"),
    "unlisted dot-dot": (_unlisted_entry_named("../../evil.py"), "path escapes the bundle"),
    "absolute": (_entry_named("/etc/evil"), "absolute path"),
    "backslash": (_entry_named("evil\\..\\..\\x.py"), "backslash"),
    "drive letter": (_entry_named("C:evil.py"), "drive letter"),
    "symlink entry": (_symlink, "symlink entries are not allowed"),
    "directory entry": (_directory_entry, "folder entries"),
    "bomb, size lie": (_bomb_declared_small, "corrupt archive|more data than"),
    "bomb, over cap": (_bomb_declared_large, "over the cap of 65536 bytes"),
    "manifest not JSON": (_manifest_not_json, "not canonical JSON"),
    "manifest not canonical": (_manifest_not_canonical, "canonical"),
    "manifest duplicate key": (_manifest_duplicate_key, "duplicate key"),
    "manifest bad schema": (_manifest_bad_schema, "format 2 is not supported"),
    "manifest not first": (_manifest_not_first, "first entry must be"),
    "corrupt deflate stream": (_corrupt_deflate_stream, "corrupt archive"),
    "not a zip": (_not_a_zip, "not a zip archive"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archives_are_refused_before_anything_is_written(tmp_path: Path, case: str) -> None:
    make, message = HOSTILE[case]
    data, digest = make()
    with pytest.raises(BundleError, match=message):
        open_bundle(data, expected_hash=digest, max_bytes=2**16)
    parent = tmp_path / "parent"
    parent.mkdir()
    with pytest.raises(BundleError, match=message):
        extract_bundle(data, parent / "dest", expected_hash=digest, max_bytes=2**16)
    assert list(parent.iterdir()) == []
    cache = BundleCache(tmp_path / "cache", max_bytes=2**16)
    with pytest.raises(BundleError):
        cache.install(data, digest)
    assert not cache.has(digest)
    assert not (tmp_path / "evil.py").exists()


def test_malformed_expected_hash(tmp_path: Path) -> None:
    bundle = build_bundle(make_app(tmp_path))
    with pytest.raises(BundleError, match="not 64 lowercase hex"):
        open_bundle(bundle.data, expected_hash=bundle.hash.upper())


# ------------------------------------------------------------------ properties

_name = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=8).filter(
    lambda s: s not in {"build", "dist", "__pycache__"}
)
_path = st.lists(_name, min_size=1, max_size=3).map("/".join).map(lambda p: f"p{p}")
_tree = st.dictionaries(_path, st.binary(max_size=300), max_size=8).filter(
    lambda t: not any(other.startswith(f"{p}/") for p in t for other in t)
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_tree)
def test_random_trees_build_deterministically_and_round_trip(tree: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first = build_bundle(make_app(root / "a", tree))
        second = build_bundle(make_app(root / "b", dict(reversed(tree.items()))))
        assert first.data == second.data
        assert first.hash == second.hash
        assert bundled(first) == sorted([*tree, "pyproject.toml"])
        cache = BundleCache(root / "cache")
        path = cache.install(first.data, first.hash)
        for rel, data in tree.items():
            assert (path / rel).read_bytes() == data
        assert cache.verify(first.hash)


def test_a_manifest_string_with_a_lone_surrogate_is_refused() -> None:
    """``\\ud800`` is plain ASCII in the canonical manifest, a lone surrogate once parsed."""
    files = {"evil/server.py": b"app = 1\n"}
    raw = canonical_json(_manifest(files, name="x")).replace(b'"name":"x"', b'"name":"\\ud800"')
    data = _archive(files, raw)
    with pytest.raises(BundleError, match="lone surrogate"):
        open_bundle(data, expected_hash=_hash_of(data))
