"""Layered configuration: defaults < TOML file < FEDZERO_* environment < flags."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Literal

import pytest

from fedzero.core import ConfigurationError
from fedzero.core.runtime import (
    Origin,
    config_origins,
    default_state_dir,
    env_var_name,
    load_config,
    render_config,
)

pytestmark = pytest.mark.timeout(120)  # a safety net, not a pace: starved machines are slow

FILE_HEADER = "[demo]\n"


@dataclasses.dataclass(slots=True)
class Demo:
    """A config shaped like the daemons' (every supported annotation)."""

    address: str = "tcp://127.0.0.1:9092"
    heartbeat_timeout: float = 3.0
    max_uploads: int = 4
    warmup: bool = True
    state_dir: Path = Path("/var/lib/demo")
    secret_key: Path | None = None
    node_config: dict[str, str | int | float | bool] = dataclasses.field(default_factory=dict)
    tags: list[str] = dataclasses.field(default_factory=list)
    log_level: Literal["debug", "info", "warning"] = "info"
    label: str | None = None

    def validate(self) -> None:
        if self.heartbeat_timeout <= 0:
            raise ConfigurationError(
                f"heartbeat_timeout: must be positive, got {self.heartbeat_timeout}"
            )
        if (self.secret_key is None) != (self.label is None):
            raise ConfigurationError("secret_key, label: set both or neither")
        if self.max_uploads == 99:
            raise ConfigurationError("no key named here")


@dataclasses.dataclass
class Required:
    link: str
    retries: int = 1


def write(tmp_path: Path, body: str, header: str = FILE_HEADER) -> Path:
    path = tmp_path / "demo.toml"
    path.write_text(header + body, encoding="utf-8")
    return path


def load(**kwargs: object) -> Demo:
    kwargs.setdefault("environ", {})
    return load_config(Demo, "demo", **kwargs)  # type: ignore[arg-type]


def error(**kwargs: object) -> str:
    with pytest.raises(ConfigurationError) as info:
        load(**kwargs)
    return str(info.value)


# --- precedence and spelling --------------------------------------------------------------


def test_defaults_only() -> None:
    assert load() == Demo()
    assert set(config_origins(load()).values()) == {Origin("default")}


def test_precedence_default_file_env_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "heartbeat-timeout = 5\nmax-uploads = 8\nwarmup = false\n")
    env = {"FEDZERO_DEMO_MAX_UPLOADS": "16", "FEDZERO_DEMO_WARMUP": "yes"}
    config = load(config_file=path, environ=env, overrides={"warmup": False, "tags": None})
    assert config.heartbeat_timeout == 5.0  # file over default
    assert isinstance(config.heartbeat_timeout, float)
    assert config.max_uploads == 16  # env over file
    assert config.warmup is False  # flag over env
    assert config.tags == []  # a None override means "flag not given"
    assert config.address == Demo().address  # default
    origins = config_origins(config)
    assert origins["heartbeat_timeout"] == Origin("file", str(path))
    assert origins["max_uploads"] == Origin("env", "FEDZERO_DEMO_MAX_UPLOADS")
    assert origins["warmup"] == Origin("flag", "--warmup")
    assert origins["address"] == Origin("default")


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDZERO_DEMO_MAX_UPLOADS", "7")
    assert load_config(Demo, "demo").max_uploads == 7


@pytest.mark.parametrize("key", ["heartbeat-timeout", "heartbeat_timeout"])
def test_both_key_spellings_in_file(tmp_path: Path, key: str) -> None:
    assert load(config_file=write(tmp_path, f"{key} = 9.5\n")).heartbeat_timeout == 9.5


def test_both_key_spellings_in_overrides() -> None:
    config = load(overrides={"max-uploads": 2, "heartbeat_timeout": 1})
    assert (config.max_uploads, config.heartbeat_timeout) == (2, 1.0)
    assert config_origins(config)["max_uploads"] == Origin("flag", "--max-uploads")


def test_other_tables_are_left_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "max-uploads = 3\n[node]\nlink = 'x'\n")
    assert load(config_file=path).max_uploads == 3


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load(config_file=write(tmp_path, "", header="# nothing yet\n")) == Demo()


def test_env_var_name() -> None:
    assert env_var_name("link", "heartbeat-timeout") == "FEDZERO_LINK_HEARTBEAT_TIMEOUT"
    assert env_var_name("node", "node_config") == "FEDZERO_NODE_NODE_CONFIG"


# --- conversion ---------------------------------------------------------------------------


def test_types_from_file(tmp_path: Path) -> None:
    body = """
        address = "ipc:///run/fedzero/fleet"
        state-dir = "/srv/state"
        secret-key = "/etc/fedzero/link.key_secret"
        label = "eu-1"
        node-config = { partition-id = 0, lr = 0.1, name = "pi-3", gpu = false }
        tags = ["a", "b"]
        log-level = "debug"
    """
    config = load(config_file=write(tmp_path, body))
    assert config.address == "ipc:///run/fedzero/fleet"
    assert config.state_dir == Path("/srv/state")
    assert config.secret_key == Path("/etc/fedzero/link.key_secret")
    assert config.node_config == {"partition-id": 0, "lr": 0.1, "name": "pi-3", "gpu": False}
    assert config.tags == ["a", "b"]
    assert config.log_level == "debug"


def test_types_from_env() -> None:
    env = {
        "FEDZERO_DEMO_HEARTBEAT_TIMEOUT": "0.25",
        "FEDZERO_DEMO_MAX_UPLOADS": " 12 ",
        "FEDZERO_DEMO_WARMUP": "off",
        "FEDZERO_DEMO_STATE_DIR": "/data/x",
        "FEDZERO_DEMO_SECRET_KEY": "/k",
        "FEDZERO_DEMO_LABEL": "l",
        "FEDZERO_DEMO_NODE_CONFIG": 'partition-id=1, lr=0.5,name=pi,quoted="a b",on=true',
        "FEDZERO_DEMO_TAGS": "x, y,,z",
        "FEDZERO_DEMO_LOG_LEVEL": "warning",
        "FEDZERO_LOG_LEVEL": "debug",  # not in the section: not ours
    }
    config = load(environ=env)
    assert config.heartbeat_timeout == 0.25
    assert config.max_uploads == 12
    assert config.warmup is False
    assert config.state_dir == Path("/data/x")
    assert config.secret_key == Path("/k")
    assert config.node_config == {
        "partition-id": 1,
        "lr": 0.5,
        "name": "pi",
        "quoted": "a b",
        "on": True,
    }
    assert config.tags == ["x", "y", "z"]
    assert config.log_level == "warning"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("on", True), ("0", False), ("No", False), ("false", False)],
)
def test_env_booleans(raw: str, expected: bool) -> None:
    assert load(environ={"FEDZERO_DEMO_WARMUP": raw}).warmup is expected


def test_empty_value_unsets_optional(tmp_path: Path) -> None:
    env = {"FEDZERO_DEMO_SECRET_KEY": "", "FEDZERO_DEMO_LABEL": ""}
    path = write(tmp_path, 'secret-key = "/k"\nlabel = "x"\n')
    config = load(config_file=path, environ=env)
    assert (config.secret_key, config.label) == (None, None)


def test_overrides_take_python_objects_and_strings() -> None:
    config = load(
        overrides={
            "state_dir": Path("/p"),
            "secret_key": "/k",
            "label": "x",
            "node_config": ["a=1,b=two", "c=0.5"],  # a repeatable --node-config flag
            "tags": ["t"],
            "heartbeat_timeout": "2.5",
        }
    )
    assert config.state_dir == Path("/p")
    assert config.secret_key == Path("/k")
    assert config.node_config == {"a": 1, "b": "two", "c": 0.5}
    assert config.tags == ["t"]
    assert config.heartbeat_timeout == 2.5


def test_path_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load(environ={"FEDZERO_DEMO_STATE_DIR": "~/s"}).state_dir == tmp_path / "s"


# --- errors name the key and the source ---------------------------------------------------


def test_error_message_shape() -> None:
    message = error(environ={"FEDZERO_DEMO_HEARTBEAT_TIMEOUT": "soon"})
    assert message == (
        "demo.heartbeat_timeout: expected a number, got 'soon' (from FEDZERO_DEMO_HEARTBEAT_TIMEOUT)"
    )


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("MAX_UPLOADS", "4.5", "demo.max_uploads: expected an integer, got '4.5'"),
        ("WARMUP", "maybe", "demo.warmup: expected true or false, got 'maybe'"),
        ("HEARTBEAT_TIMEOUT", "nan", "demo.heartbeat_timeout: expected a finite number"),
        ("STATE_DIR", "", "demo.state_dir: expected a path, got ''"),
        ("LOG_LEVEL", "loud", "demo.log_level: expected one of 'debug', 'info', 'warning'"),
        ("NODE_CONFIG", "a=1,oops", "demo.node_config: expected a table of key = value"),
        ("NODE_CONFIG", "=1", "'=1' is not key=value"),
    ],
)
def test_env_errors(key: str, raw: str, expected: str) -> None:
    message = error(environ={f"FEDZERO_DEMO_{key}": raw})
    assert expected in message
    assert message.endswith(f"(from FEDZERO_DEMO_{key})")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("max-uploads = 4.0", "demo.max_uploads: expected an integer, got 4.0"),
        ("max-uploads = true", "demo.max_uploads: expected an integer, got True"),
        ("heartbeat-timeout = 'soon'", "demo.heartbeat_timeout: expected a number, got 'soon'"),
        ("heartbeat-timeout = inf", "demo.heartbeat_timeout: expected a finite number, got inf"),
        ("warmup = 1", "demo.warmup: expected true or false, got 1"),
        ("address = 9092", "demo.address: expected a string, got 9092"),
        ("state-dir = 3", "demo.state_dir: expected a path, got 3"),
        ("tags = 'a'", "demo.tags: expected a list of strings, got 'a'"),
        ("tags = [1]", "demo.tags: expected a string, got 1"),
        ("node-config = 3", "demo.node_config: expected a table of key = value"),
        (
            "node-config = { a = [1] }",
            "demo.node_config: item 'a': expected a string or an integer or a number or true or false, got [1]",
        ),
        ("log-level = 'loud'", "demo.log_level: expected one of 'debug', 'info', 'warning'"),
    ],
)
def test_file_errors(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, body + "\n")
    message = error(config_file=path)
    assert expected in message
    assert message.endswith(f"(from {path})")


def test_flag_error_names_the_flag() -> None:
    message = error(overrides={"max-uploads": "many"})
    assert message == "demo.max_uploads: expected an integer, got 'many' (from --max-uploads)"


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "heartbeat-timout = 3\n")
    assert error(config_file=path) == (
        f"config file {path}: unknown key 'heartbeat-timout' in [demo]; "
        "did you mean 'heartbeat-timeout'?"
    )


def test_unknown_env_var_in_section() -> None:
    message = error(environ={"FEDZERO_DEMO_MAX_UPLOAD": "3"})
    assert message == (
        "demo: unknown setting 'max_upload' (from FEDZERO_DEMO_MAX_UPLOAD); "
        "did you mean 'FEDZERO_DEMO_MAX_UPLOADS'?"
    )


def test_unknown_override() -> None:
    assert error(overrides={"colour": "red"}) == "demo: unknown setting 'colour' (from --colour)"


def test_key_given_twice_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "max-uploads = 1\nmax_uploads = 2\n")
    assert "sets 'max_uploads' twice" in error(config_file=path)


def test_key_outside_the_table(tmp_path: Path) -> None:
    path = write(tmp_path, "max-uploads = 1\n", header="")
    assert error(config_file=path) == (
        f"config file {path}: key 'max-uploads' is outside the [demo] table"
    )


def test_file_without_the_section(tmp_path: Path) -> None:
    path = write(tmp_path, "link = 'x'\n", header="[node]\n")
    assert error(config_file=path) == f"config file {path}: no [demo] table"


def test_bad_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "max-uploads = = 3\n")
    message = error(config_file=path)
    assert message.startswith(f"config file {path}: invalid TOML: ")
    assert "line 2" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"[demo]\nlabel = '\xff'\n")
    assert error(config_file=path).startswith(f"config file {path}: invalid TOML")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert error(config_file=path) == f"config file {path}: not found"


def test_unreadable_file(tmp_path: Path) -> None:
    assert error(config_file=tmp_path).startswith(f"config file {tmp_path}: cannot read it")


def test_validate_error_gets_key_and_source() -> None:
    message = error(environ={"FEDZERO_DEMO_HEARTBEAT_TIMEOUT": "-1"})
    assert message == (
        "demo.heartbeat_timeout: must be positive, got -1.0 (from FEDZERO_DEMO_HEARTBEAT_TIMEOUT)"
    )


def test_validate_error_naming_two_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "label = 'x'\n")
    assert error(config_file=path) == (
        f"demo.secret_key, demo.label: set both or neither (secret_key default; label from {path})"
    )


def test_validate_error_without_a_key_passes_through() -> None:
    assert error(overrides={"max_uploads": 99}) == "no key named here"


def test_required_field() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(Required, "node", environ={})
    assert str(info.value) == (
        "node.link: required; set link in the [node] table of the config file, "
        "FEDZERO_NODE_LINK, or --link"
    )
    config = load_config(Required, "node", environ={"FEDZERO_NODE_LINK": "tcp://h:1"})
    assert config == Required(link="tcp://h:1")


def test_programming_errors_are_type_errors() -> None:
    @dataclasses.dataclass
    class Odd:
        when: complex = 1j

    with pytest.raises(TypeError, match=r"Odd.when: unsupported annotation"):
        load_config(Odd, "odd", environ={})
    with pytest.raises(TypeError, match="needs a dataclass"):
        load_config(dict, "odd", environ={})


# --- render_config ------------------------------------------------------------------------


def test_render_config_round_trip(tmp_path: Path) -> None:
    path = write(tmp_path, 'node-config = { "a b" = "x\\"y\\n", n = 1 }\nlabel = "tab\\there"\n')
    config = load(
        config_file=path,
        environ={"FEDZERO_DEMO_HEARTBEAT_TIMEOUT": "1e-3", "FEDZERO_DEMO_TAGS": "p,q"},
        overrides={"secret_key": Path("/etc/k"), "warmup": False},
    )
    text = render_config(config, "demo")
    parsed = tomllib.loads(text)
    assert set(parsed) == {"demo"}
    again = write(tmp_path, text, header="")
    assert load(config_file=again) == config


def test_render_config_comments_say_where_values_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, "max-uploads = 8\n")
    config = load(
        config_file=path,
        environ={"FEDZERO_DEMO_HEARTBEAT_TIMEOUT": "5"},
        overrides={"warmup": False},
    )
    lines = render_config(config, "demo").splitlines()
    assert "[demo]" in lines
    assert f"max-uploads = 8  # file {path}" in lines
    assert "heartbeat-timeout = 5.0  # env FEDZERO_DEMO_HEARTBEAT_TIMEOUT" in lines
    assert "warmup = false  # flag --warmup" in lines
    assert 'address = "tcp://127.0.0.1:9092"  # default' in lines
    assert 'secret-key = ""  # default (unset)' in lines
    assert "node-config = {}  # default" in lines


def test_render_config_of_an_instance_built_in_code() -> None:
    text = render_config(Demo(max_uploads=2), "demo")
    assert "max-uploads = 2  # code" in text.splitlines()
    assert "warmup = true  # default" in text.splitlines()
    custom = render_config(Demo(), "demo", origins={"warmup": Origin("flag", "--warmup")})
    assert "warmup = true  # flag --warmup" in custom.splitlines()


# --- default_state_dir --------------------------------------------------------------------


def test_default_state_dir() -> None:
    assert default_state_dir(environ={"HOME": "/home/u"}) == Path("/home/u/.local/share/fedzero")
    assert default_state_dir(environ={"HOME": "/h", "XDG_DATA_HOME": "/x"}) == Path("/x/fedzero")
    assert default_state_dir(environ={"HOME": "/h", "XDG_DATA_HOME": "rel"}) == Path(
        "/h/.local/share/fedzero"
    )
    assert default_state_dir(system=True, environ={}) == Path("/var/lib/fedzero")
    systemd = {"STATE_DIRECTORY": "/var/lib/fedzero:/var/lib/other", "HOME": "/h"}
    assert default_state_dir(environ=systemd) == Path("/var/lib/fedzero")
    assert default_state_dir("app", system=True, environ=systemd) == Path("/var/lib/fedzero")
    assert default_state_dir("app", system=True, environ={}) == Path("/var/lib/app")
