"""The house rules of the layout (ARCHITECTURE.md), checked on the source itself.

- No module imports another package's private module (``fedzero.X._y`` from
  outside ``X``), tests included; what another package needs is on a surface.
- No import cycles between modules, lazy (function-level) or not. Imports under
  ``if TYPE_CHECKING:`` name types only and are not counted.
- Modules stay under 450 lines; nothing needs ``# fmt: skip``.
- ARCHITECTURE.md names every sub-package, and only those.
- Flower's module names (``fedzero.app``, ``fedzero.serverapp``, ...) live in
  ``core/flower/`` and are installed under those names (pyproject's package-dir);
  they are public surfaces over ``fedzero.core``/``fedzero.aggregation``.
- The ``fedzero`` command and the strategies import what they need, not the daemon
  or the JIT.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "link", "node", "aggregation", "bench")
MAX_LINES = 450
PACKAGE_DIRS = {
    name: ROOT / folder
    for name, folder in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "tool"
    ]["setuptools"]["package-dir"].items()
}
FLOWER = {name for name in PACKAGE_DIRS if name.split(".")[1] not in PACKAGES}
"""Flower's module names (``fedzero.app`` ...), folders inside ``core/flower/``."""


def _modules() -> dict[str, Path]:
    """Every module of ours, by its installed dotted name (``fedzero.core.wire._codec``)."""
    out: dict[str, Path] = {}
    for name, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            if "templates" in rel.parts:  # app templates: package data, not our modules
                continue
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            if name not in FLOWER and any(path.is_relative_to(PACKAGE_DIRS[f]) for f in FLOWER):
                continue  # core/flower/app is fedzero.app, not fedzero.core.flower.app
            out[".".join([name, *parts])] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(name: str, path: Path) -> Iterator[tuple[str, int, bool]]:
    """Yield ``(imported module, line, type_checking_only)`` for one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, node.lineno in typing_only
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                target = sub if sub in MODULES else mod
                yield target, node.lineno, node.lineno in typing_only


def _test_files() -> list[Path]:
    files = sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "examples").rglob("*.py"))
    return [f for f in files if f.name != "test_layout.py"]  # this file names the rules


def _private_part(module: str) -> bool:
    return any(p.startswith("_") and not p.startswith("__") for p in module.split(".")[2:])


def test_no_package_imports_another_packages_private_modules() -> None:
    bad = []
    for name, path in MODULES.items():
        top = name.split(".")[1]
        for target, line, _ in _imports(name, path):
            parts = target.split(".")
            foreign = parts[0] == "fedzero" and len(parts) > 2 and parts[1] != top
            if foreign and _private_part(target):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    for path in _test_files():
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"fedzero(?:\.\w+)+", text):
            if match.group(0).split(".")[1] in PACKAGES and _private_part(match.group(0)):
                line = text.count("\n", 0, match.start()) + 1
                bad.append(f"{path.relative_to(ROOT)}:{line} names {match.group(0)}")
    assert not bad, "private modules used across packages:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _, typing_only in _imports(name, path):
            if target in MODULES and not typing_only and target != name:
                graph[name].add(target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_modules_stay_small() -> None:
    big = {
        str(path.relative_to(ROOT)): n
        for path in MODULES.values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_nothing_needs_fmt_skip() -> None:
    files = [*MODULES.values(), *_test_files()]
    skips = [str(p.relative_to(ROOT)) for p in files if "fmt: skip" in p.read_text()]
    assert not skips, f"'# fmt: skip' in {skips}"


def test_flower_names_are_surfaces_over_core_and_aggregation() -> None:
    assert {"fedzero.app", "fedzero.clientapp", "fedzero.serverapp", "fedzero.common"} <= FLOWER
    for name, path in MODULES.items():
        if name.split(".")[1] in {f.split(".")[1] for f in FLOWER}:
            for target, line, _ in _imports(name, path):
                if target.startswith("fedzero.") and target.split(".")[1] in PACKAGES:
                    assert not _private_part(target), f"{path}:{line} imports {target}"


def test_architecture_names_every_subpackage() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`fedzero\.(\w+(?:\.\w+)+)`", text))
    actual = {name.removeprefix("fedzero.") for name in MODULES if _is_package(name)}
    actual = {n for n in actual if "." in n}
    assert actual - named == set(), "sub-packages missing from ARCHITECTURE.md"
    assert {f for f in FLOWER if f"`{f}`" not in text} == set(), "Flower names missing"
    stale = {n for n in named - actual if n.split(".")[0] in PACKAGES and n in _dotted_packages()}
    assert not stale


def _dotted_packages() -> set[str]:
    return {name.removeprefix("fedzero.") for name in MODULES if _is_package(name)}


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_the_fedzero_command_imports_no_daemon_and_no_jit() -> None:
    loaded = _loaded_after("import fedzero.core.cli")
    daemon = sorted(m for m in loaded if m.startswith(("fedzero.link", "fedzero.node")))
    assert not daemon
    assert "numba" not in loaded
    assert "fedzero.aggregation" not in loaded


@pytest.mark.parametrize(
    "code",
    [
        "from fedzero.aggregation import FedAvg",
        "from fedzero.aggregation import FedAdam, FedMedian, Krum, Strategy",
    ],
)
def test_strategies_do_not_import_numba(code: str) -> None:
    assert "numba" not in _loaded_after(code)
