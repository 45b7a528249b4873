"""--run-config as Flower parses it, and Flower's [tool.flwr.app] pyproject read as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedzero.core import ConfigurationError
from fedzero.core.bundles import build_bundle, read_app_spec
from fedzero.core.cli import parse_run_config


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (
            ["num-server-rounds=2 fraction-evaluate=0.5"],
            {"num-server-rounds": 2, "fraction-evaluate": 0.5},
        ),
        (["name=\"a, b\" other='x y'"], {"name": "a, b", "other": "x y"}),
        (["on=true", "lr=1e-3"], {"on": True, "lr": 0.001}),
        (["a.b=1 t={u=2}"], {"a.b": 1, "t.u": 2}),
        (["n=1", "n=2"], {"n": 2}),  # repeated option: later wins
        (["features=age,height"], {"features": "age,height"}),  # fedzero: bare word is a string
        (["num-rounds=3,lr=0.5"], {"num-rounds": 3, "lr": 0.5}),  # fedzero's older comma form
        ([], {}),
        (None, {}),
    ],
)
def test_pairs_parse_as_flower_does(items: list[str] | None, expected: dict[str, object]) -> None:
    assert parse_run_config(items) == expected


@pytest.mark.parametrize(
    ("items", "match"),
    [
        (["oops"], "not key=value"),
        (["a=[1,2]"], "list"),
        (['x="unterminated'], "not valid TOML"),
        (["conf.toml", "a=1"], "alone"),
    ],
)
def test_malformed_run_config_is_refused(items: list[str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse_run_config(items)


def test_a_toml_file_is_read_and_flattened(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('num-server-rounds = 4\nname = "x, y"\n[model]\nhidden = 8\n', encoding="utf-8")
    assert parse_run_config([str(path)]) == {
        "num-server-rounds": 4,
        "name": "x, y",
        "model.hidden": 8,
    }
    with pytest.raises(ConfigurationError, match="cannot read"):
        parse_run_config([str(tmp_path / "missing.toml")])


FLWR_PYPROJECT = """
[project]
name = "quickstart-numpy"
version = "1.0.0"

[tool.flwr.app]
publisher = "flwrlabs"

[tool.flwr.app.components]
serverapp = "quickstart_numpy.server_app:app"
clientapp = "quickstart_numpy.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 3
fraction-evaluate = 0.5
[tool.flwr.app.config.model]
hidden = 64

[tool.flwr.federations]
default = "local-simulation"
"""


def test_flowers_pyproject_is_read_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(FLWR_PYPROJECT, encoding="utf-8")
    (tmp_path / "quickstart_numpy").mkdir()
    (tmp_path / "quickstart_numpy" / "__init__.py").write_text("", encoding="utf-8")
    spec = read_app_spec(tmp_path)
    assert spec.serverapp == "quickstart_numpy.server_app:app"
    assert spec.clientapp == "quickstart_numpy.client_app:app"
    assert spec.config == {"num-server-rounds": 3, "fraction-evaluate": 0.5, "model.hidden": 64}
    assert build_bundle(tmp_path).config == spec.config


def test_a_flower_pyproject_without_components_says_where(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.flwr.app]\npublisher = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"tool\.flwr\.app\.components\.serverapp"):
        read_app_spec(tmp_path)
