"""`make dist` builds the folder that goes to Fivetran: runtime code only, and it imports on its own."""

from __future__ import annotations

import ast
import os
import shutil
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



PROVIDED_BY_FIVETRAN = ("requests",)
"""What Fivetran installs besides requirements.txt and its SDK (whose public names are `fivetran_*`)."""

SDK = "fivetran-connector-sdk"


def closure(requirements: list[str]) -> set[str]:
    """The distributions `pip install` of `requirements` brings in: every one named, and what they require in
    turn (markers evaluated for this interpreter, no extras)."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted = [Requirement(text) for text in requirements]
    found: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name in found or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        found.add(name)
        wanted += [Requirement(text) for text in distribution(name).requires or ()]
    return found


def requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def top_level_entries(distributions: set[str]) -> dict[str, Path]:
    """The files and folders the distributions install at the top of site-packages, by name."""
    from importlib.metadata import distribution

    entries = {}
    for name in distributions:
        dist = distribution(name)
        for first in {file.parts[0] for file in dist.files or () if file.parts[0] != ".."}:
            entries[first] = Path(str(dist.locate_file(first)))
    return entries


def import_name(entry: str) -> str:
    """`orjson/` → orjson, `six.py` → six, `_cffi_backend.cpython-311-x86_64-linux-gnu.so` → _cffi_backend."""
    return entry.split(".", 1)[0]


IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys
import fivetran_connector_sdk
# The open-source SDK runs the local runner too (DuckDB and more); production's SDK does not bring those, so
# what it loaded beyond the names Fivetran provides is hidden from the connector's own imports.
for name in list(sys.modules):
    if name.split(".")[0] in SDK_ONLY:
        sys.modules[name] = None
import connector, dune_async
for module in pkgutil.iter_modules(dune_async.__path__):
    importlib.import_module("dune_async." + module.name)
"""


def imports_with_only(target: Path, site: Path, sdk_only: set[str]) -> subprocess.CompletedProcess[str]:
    """Imports connector.py and every dune_async module from `target` in an isolated interpreter (-I -S: no
    site-packages, no user site, no PYTHONPATH) that sees the standard library, `target` and `site` only."""
    probe = (f"import sys\nsys.path[:0] = [{str(target)!r}, {str(site)!r}]\nSDK_ONLY = {sorted(sdk_only)!r}\n"
             + IMPORT_EVERY_MODULE)
    return subprocess.run([sys.executable, "-I", "-S", "-c", probe], cwd=target, capture_output=True, text=True,
                          check=False, timeout=60)


def test_the_deployed_folder_imports_with_requirements_txt_alone(tmp_path: Path) -> None:
    """A site-packages holding only what requirements.txt installs, plus the SDK and what Fivetran provides."""
    target = tmp_path / "connector"
    subprocess.run(["make", "--no-print-directory", "dist", f"DIST={target}"], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    runtime = closure(requirement_lines(target / "requirements.txt") + list(PROVIDED_BY_FIVETRAN))
    assert {"aiohttp", "orjson", "backoff", "requests"} <= runtime
    assert not {"pytest", "duckdb", "aioresponses", "fivetran-connector-sdk"} & runtime
    runtime_entries = top_level_entries(runtime)
    sdk_entries = top_level_entries(closure([SDK]))
    site = tmp_path / "site"
    site.mkdir()
    for entry, source in {**sdk_entries, **runtime_entries}.items():
        if source.exists():
            (site / entry).symlink_to(source)
    provided = {import_name(entry) for entry in runtime_entries}
    sdk_only = {import_name(e) for e in sdk_entries if not e.startswith("fivetran_")} - provided
    assert "duckdb" in sdk_only

    result = imports_with_only(target, site, sdk_only)
    assert result.returncode == 0, result.stderr[-3000:]

    # The check can fail: a runtime module importing a library the dev environment has and production does not.
    for library in ("duckdb", "pytest"):
        broken = tmp_path / f"broken-{library}"
        shutil.copytree(target, broken)
        events = broken / "dune_async" / "events.py"
        events.write_text(events.read_text() + f"\nimport {library}  # noqa\n")
        result = imports_with_only(broken, site, sdk_only)
        assert result.returncode != 0 and library in result.stderr.splitlines()[-1], (library, result.stderr)
