"""`make dist` builds the folder that goes to Fivetran: runtime code only, and it imports on its own."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMULATOR = "dune_emulator"


def emulator_imports(path: Path, package: str) -> list[str]:
    """The imports of `path` (a module of `package`) that reach the emulator, absolute or relative."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found += [name for name in names if name == EMULATOR or name.startswith(EMULATOR + ".")]
    return found


def package_of(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).parts[:-1])


def test_no_runtime_module_imports_the_emulator() -> None:
    runtime = list((ROOT / "dune_async").rglob("*.py"))
    assert len(runtime) > 10
    offenders = {str(p.relative_to(ROOT)): emulator_imports(p, package_of(p, ROOT))
                 for p in [*runtime, ROOT / "connector.py"]}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_emulator_import_check_sees_every_form(tmp_path: Path) -> None:
    """The check above must be able to fail."""
    forms = {"import dune_emulator": "dune_async", "from dune_emulator import Scenario": "dune_async",
             "import dune_emulator.app": "dune_async", "from dune_emulator.app import build_app": "dune_async.sub"}
    for source, package in forms.items():
        module = tmp_path / "module.py"
        module.write_text(source + "\n")
        assert emulator_imports(module, package), source
    module.write_text("from dune_async import events\nimport dune_async.emulation_notes\n")
    assert emulator_imports(module, "dune_async") == []


def test_make_dist_ships_runtime_code_only_and_imports_on_its_own(tmp_path: Path) -> None:
    target = tmp_path / "connector"
    subprocess.run(["make", "--no-print-directory", "dist", f"DIST={target}"], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    assert (target / "connector.py").is_file() and (target / "requirements.txt").is_file()
    assert (target / "configuration.json").is_file()
    assert (target / "dune_async" / "orchestrator.py").is_file()
    assert not (target / "dune_emulator").exists()
    shipped = sorted(p.name for p in (target / "dune_async").glob("*.py"))
    assert shipped == sorted(p.name for p in (ROOT / "dune_async").glob("*.py")), "make dist is a plain copy"
    assert not list(target.rglob("__pycache__"))
    offenders = [str(p) for p in target.rglob("*.py") if emulator_imports(p, package_of(p, target))]
    assert offenders == []

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    probe = ("import importlib, pkgutil, sys, connector, dune_async; "
             "[importlib.import_module('dune_async.' + m.name) for m in pkgutil.iter_modules(dune_async.__path__)]; "
             "print(dune_async.__file__); print(any(n.startswith('dune_emulator') for n in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=target, env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    package_file, emulator_loaded = result.stdout.split()[-2:]
    assert Path(package_file).resolve().is_relative_to(target.resolve()), "imported the repository's copy"
    assert emulator_loaded == "False"
