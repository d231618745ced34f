"""The architecture of docs/architecture.md, enforced: layers, pure kernels, thin surfaces, sizes.

The layer contracts live in ``pyproject.toml`` (``[tool.importlinter]``) and are checked with
import-linter's own command, so a change that imports across a layer fails here.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dasksr"


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def test_import_linter_contracts_are_kept() -> None:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert command is not None, "import-linter is a test dependency: pip install -e '.[test]'"
    done = subprocess.run(
        [command, "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_module_sits_in_a_layer() -> None:
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    named = {m.strip() for layer in layers for m in re.split(r"[|:]", str(layer))}
    modules = set()
    for path in PACKAGE.iterdir():
        if path.name.startswith("_") or path.name == "weights":
            continue
        if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()):
            modules.add(f"dasksr.{path.stem}")
    assert modules - named == set(), "add these modules to a layer in pyproject.toml"
    assert named - modules == set()


def test_nothing_in_the_package_imports_the_cli_or_the_accessor() -> None:
    # Including the package's own __init__ (it registers the accessor by module name, lazily).
    for path in PACKAGE.rglob("*.py"):
        if path.stem in ("cli", "accessor"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            bad = [n for n in names if n in ("dasksr.cli", "dasksr.accessor")]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize(("limit", "paths"), [(800, "dasksr/**/*.py"), (500, "dasksr/cli.py")])
def test_modules_stay_small(limit: int, paths: str) -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in ROOT.glob(paths)
        if (n := len(p.read_text().splitlines())) > limit
    }
    assert big == {}, f"split these modules (over {limit} lines): {big}"


def test_no_sys_path_manipulation_anywhere() -> None:
    pattern = re.compile(r"sys\.path\.(insert|append|extend)|PYTHONPATH")
    found = []
    for folder in ("dasksr", "tests", "benchmarks", "training", "docs", "notebooks"):
        for path in (ROOT / folder).rglob("*"):
            mine = path.resolve() == Path(__file__).resolve()
            if path.suffix in (".py", ".ipynb") and not mine and pattern.search(path.read_text()):
                found.append(str(path.relative_to(ROOT)))
    assert found == []


def test_registry_has_no_import_circle_and_kernels_register_nothing() -> None:
    # A fresh interpreter: importing a kernel module registers nothing and loads no model file.
    code = (
        "import sys, dasksr.kernels.interp, dasksr.kernels.cnn;"
        "assert 'dasksr.methods' not in sys.modules and 'dasksr.models' not in sys.modules;"
        "import dasksr.methods as m; names = [x.name for x in m.list_methods()];"
        "assert {'bicubic', 'cnn', 'cnn-sensor'} <= set(names), names"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
