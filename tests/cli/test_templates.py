"""App templates: each one is written offline, loads, bundles, and runs."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedzero.core import ArrayRecord, ConfigurationError, Context, Message, RecordDict
from fedzero.core.bundles import build_bundle, load_client_app, load_object, read_app_spec
from fedzero.core.cli import FRAMEWORKS, create_app, package_name

pytestmark = pytest.mark.timeout(60)


def _local(app_dir: Path, *config: str) -> str:
    args = [sys.executable, "-m", "fedzero.core.cli", "local", str(app_dir), "--nodes", "2"]
    for item in config:
        args += ["--run-config", item]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def isolated_imports() -> Iterator[None]:
    """Undo what loading the app ``tpl-torch-test`` does to sys.path and sys.modules."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in [m for m in sys.modules if m.partition(".")[0] == "tpl_torch_test"]:
        del sys.modules[name]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_template_files(tmp_path: Path, framework: str) -> None:
    dest = create_app("my-app", tmp_path / "proj", framework=framework)
    assert dest == tmp_path / "proj"
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "my_app/__init__.py",
        "my_app/client.py",
        "my_app/server.py",
        "my_app/task.py",
        "pyproject.toml",
    ]
    spec = read_app_spec(dest)
    assert (spec.name, spec.serverapp, spec.clientapp) == (
        "my-app",
        "my_app.server:app",
        "my_app.client:app",
    )
    assert spec.config["num-rounds"] == 5
    readme = (dest / "README.md").read_text()
    for command in ("fedzero local . --nodes 4", "fedzero build", "fedzero run"):
        assert command in readme
    assert "__" + "PACKAGE__" not in "".join((dest / f).read_text() for f in files)
    server = (dest / "my_app" / "server.py").read_text()
    assert "from fedzero.aggregation import FedAvg" in server
    assert "strategy.start(" in server
    bundle = build_bundle(dest)  # .gitignore is hidden: not bundled
    assert [f["path"] for f in bundle.manifest["files"]] == files[1:]


@pytest.mark.slow
def test_numpy_template_runs_end_to_end(tmp_path: Path) -> None:
    out = _local(create_app("linreg", tmp_path / "linreg"), "num-rounds=2")
    r2 = [float(v) for v in re.findall(r"r2=([0-9.]+)", out)]
    assert r2, out
    assert r2[-1] > 0.9, out


def test_pytorch_template_client_trains_in_process(tmp_path: Path, isolated_imports: None) -> None:
    pytest.importorskip("torch")
    spec = read_app_spec(create_app("tpl-torch-test", tmp_path / "proj", framework="pytorch"))
    client = load_client_app(spec)
    net = load_object("tpl_torch_test.task:Net", spec.root)()
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": 2},
        run_config=dict(spec.config) | {"local-epochs": 1},
    )
    reply = client(Message(RecordDict({"arrays": ArrayRecord(net)}), 1, "train"), context)
    arrays = reply.content.array_records["arrays"]
    assert list(arrays) == list(net.state_dict())
    metrics = reply.content.metric_records["metrics"]
    assert metrics["num-examples"] == 256
    assert metrics["loss"] > 0

    evaluation = client(Message(RecordDict({"arrays": arrays}), 1, "evaluate"), context)
    assert 0.0 <= evaluation.content.metric_records["metrics"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_pytorch_template_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    app_dir = create_app("mlp", tmp_path / "mlp", framework="pytorch")
    out = _local(app_dir, "num-rounds=2", "local-epochs=1")
    assert re.findall(r"round +2 +accuracy=", out), out


@pytest.mark.parametrize(
    "name",
    ["", "1app", "my app", "a/b", "-x", "über", "x" * 65, "json", "NumPy", "class", "fedzero"],
)
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigurationError, match="is not allowed"):
        create_app(name, tmp_path / "proj")
    assert not (tmp_path / "proj").exists()


def test_name_rules() -> None:
    assert package_name("My-App_2") == "my_app_2"
    with pytest.raises(ConfigurationError, match="use a letter, then up to 63 letters"):
        package_name("2fast")
    with pytest.raises(ConfigurationError, match="would shadow"):
        package_name("json")


def test_existing_destinations(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigurationError, match="not an empty folder"):
        create_app("demo", tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]

    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="not an empty folder"):
        create_app("demo", tmp_path / "file")

    (tmp_path / "empty").mkdir()
    assert (create_app("demo", tmp_path / "empty") / "pyproject.toml").is_file()


def test_unknown_framework(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="choose one of: numpy, pytorch"):
        create_app("demo", tmp_path / "proj", framework="jax")
    assert not (tmp_path / "proj").exists()
