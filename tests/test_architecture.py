"""The architecture of ARCHITECTURE.md, checked on every test run (issue 15), as purepythonmilter does.

* the import-linter contracts of pyproject.toml (``[tool.importlinter]``) are kept, and each one is seen
  to break on a copy of the package with one deliberately wrong import;
* no import cycle between modules, imports under ``TYPE_CHECKING`` included (grimp, import-linter's graph);
* no module over 600 lines;
* every module is in ARCHITECTURE.md's module map, and every module the map names exists;
* ``mypy --strict`` (its configuration is in pyproject.toml) is clean over the whole package;
* no module under tests/ imports a test module (``test_*.py``), imports inside functions included: what
  tests share lives in tests/support and in the conftest files.

The failure messages name what to fix: the broken contract and its import chain, the modules of a cycle,
the long module and its length, mypy's summary, the test file, line and test module it imports.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import grimp

from conftest import ROOT

PACKAGE = ROOT / "ciphermilter"
TESTS = ROOT / "tests"
PYPROJECT = ROOT / "pyproject.toml"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
MAX_LINES = 600
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# One deliberately wrong import per contract id (pyproject.toml): module that gets it, the line.
WRONG_IMPORTS = {
    "engines-below-store": ("core/plan.py", "import ciphermilter.daemon.stats"),
    "milter-without-crypto": ("daemon/milter.py", "import cryptography"),
    "click-in-cli-only": ("core/info.py", "import click"),
    "layers": ("daemon/stats.py", "import ciphermilter.cli.common"),
}


def contracts() -> list[dict]:
    with open(PYPROJECT, "rb") as fh:
        return tomllib.load(fh)["tool"]["importlinter"]["contracts"]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the package found first on the path: the copy in ``root`` when one is there."""
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT_IMPORTS), str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def kept_and_broken(output: str) -> tuple[int, int]:
    found = re.search(r"Contracts: (\d+) kept, (\d+) broken", output)
    assert found, f"lint-imports said no summary:\n{output}"
    return int(found[1]), int(found[2])


def test_the_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, f"import-linter: a contract of pyproject.toml is broken:\n{result.stdout}"
    assert kept_and_broken(result.stdout) == (len(contracts()), 0)


def test_every_contract_breaks_on_a_wrong_import(tmp_path):
    """Each contract is checked, not vacuous: one wrong import in a copy of the package breaks exactly it."""
    assert set(WRONG_IMPORTS) == {contract["id"] for contract in contracts()}
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    shutil.copytree(PACKAGE, tmp_path / "ciphermilter", ignore=shutil.ignore_patterns("__pycache__"))
    baseline = kept_and_broken(lint_imports(tmp_path).stdout)
    for contract in contracts():
        path, line = WRONG_IMPORTS[contract["id"]]
        module = tmp_path / "ciphermilter" / path
        original = module.read_text()
        module.write_text(f"{line}  # deliberately wrong\n{original}")
        try:
            output = lint_imports(tmp_path).stdout
        finally:
            module.write_text(original)
        assert f"{contract['name']} BROKEN" in output, f"{line} in {path} did not break {contract['id']}:\n{output}"
        kept, broken = kept_and_broken(output)
        assert kept <= baseline[0] and broken >= max(baseline[1], 1)


def strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the groups of modules that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start) & modules)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.find_modules_directly_imported_by(successor) & modules))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return groups


def test_strongly_connected_finds_a_cycle_and_nothing_else():
    graph = grimp.ImportGraph()
    for module in "abcd":
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    graph.add_import(importer="c", imported="d")
    assert strongly_connected(graph, set("abcd")) == [["a", "b", "c"]]


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph("ciphermilter", exclude_type_checking_imports=False, cache_dir=None)
    cycles = strongly_connected(graph, set(graph.modules))
    described = ["; ".join(chain(graph, cycle)) for cycle in cycles]
    assert not cycles, "import cycles (TYPE_CHECKING imports included):\n" + "\n".join(described)


def chain(graph: grimp.ImportGraph, cycle: list[str]) -> list[str]:
    """Each import inside the cycle as "importer -> imported (l.N)", so that the message names what to cut."""
    members = set(cycle)
    return [f"{importer} -> {imported} (l.{detail['line_number']})"
            for importer in cycle for imported in sorted(graph.find_modules_directly_imported_by(importer) & members)
            for detail in graph.get_import_details(importer=importer, imported=imported)[:1]]


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_over_600_lines():
    lengths = {path.relative_to(ROOT): len(path.read_text().splitlines()) for path in modules()}
    too_long = [f"{path}: {lines} lines" for path, lines in sorted(lengths.items()) if lines > MAX_LINES]
    assert not too_long, f"modules over {MAX_LINES} lines:\n" + "\n".join(too_long)


def map_name(path: Path) -> str:
    """How ARCHITECTURE.md names a module: its path under ciphermilter/; a package by its folder (``mime/``)."""
    relative = path.relative_to(PACKAGE)
    if relative.name == "__init__.py":
        return f"{relative.parent.as_posix()}/" if relative.parent != Path(".") else "__init__.py"
    return relative.as_posix()


def module_map() -> set[str]:
    """The names in backquotes in the first column of the module map's table rows."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Module map", 1)[1]
    return set(re.findall(r"^\| `([^`]+)`", section, flags=re.M))


def test_every_module_is_in_the_module_map():
    missing = sorted({map_name(path) for path in modules()} - module_map())
    assert not missing, "modules missing from ARCHITECTURE.md's module map:\n" + "\n".join(missing)


def test_every_module_of_the_map_exists():
    stale = sorted(module_map() - {map_name(path) for path in modules()})
    assert not stale, "ARCHITECTURE.md's module map names modules that do not exist:\n" + "\n".join(stale)


def test_mypy_strict_is_clean():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    per_file = Counter(line.split(":", 1)[0] for line in errors)
    summary = result.stdout.strip().splitlines()[-1:] or [result.stderr.strip()]
    counts = "\n".join(f"{count:4d} {path}" for path, count in per_file.most_common())
    assert result.returncode == 0, f"mypy --strict: {summary[0]}\n{counts}\nfirst errors:\n" + "\n".join(errors[:20])


def importable_name(path: Path) -> str:
    """The dotted name a test file is imported by: from the first folder up without ``__init__.py``
    (pytest's rootdir-relative "prepend" import mode: tests/e2e/test_split.py is ``e2e.test_split``)."""
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def imported_names(tree: ast.AST, importer: str) -> list[tuple[int, str]]:
    """Every module name an import statement anywhere in the file may load (in functions too), with its line:
    ``import a.b`` gives a and a.b; ``from a import b`` gives a and a.b, as b may be a module."""
    package = importer.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, ".".join(alias.name.split(".")[:end]))
                      for alias in node.names for end in range(1, alias.name.count(".") + 2)]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level and package else []
            module = ".".join(base + ([node.module] if node.module else []))
            names += [(node.lineno, module)] + [(node.lineno, f"{module}.{alias.name}".lstrip("."))
                                                for alias in node.names]
    return names


def imports_of_test_modules(root: Path, files: list[Path]) -> list[str]:
    """"file:line imports test_module" for each import of a test module by another module of ``files``."""
    test_modules = {importable_name(path) for path in files if path.name.startswith("test_")}
    found = set()
    for path in files:
        importer = importable_name(path)
        for line, name in imported_names(ast.parse(path.read_text(), str(path)), importer):
            if name in test_modules and name != importer:
                found.add((path.relative_to(root), line, name))
    return [f"{path}:{line} imports {name}" for path, line, name in sorted(found)]


def test_the_test_import_check_sees_every_form_of_import(tmp_path):
    (tmp_path / "e2e").mkdir()
    (tmp_path / "e2e" / "__init__.py").write_text("")
    (tmp_path / "e2e" / "test_chain.py").write_text("from . import test_split\nfrom .test_split import x\n")
    (tmp_path / "e2e" / "test_split.py").write_text("import support.chain\n")
    (tmp_path / "test_milter.py").write_text("def f():\n    from test_flood import flooded\n")
    (tmp_path / "test_flood.py").write_text("import e2e.test_split as split\nfrom e2e import test_chain\n")
    (tmp_path / "conftest.py").write_text("import test_milter\n")
    files = sorted(tmp_path.rglob("*.py"))
    found = [line.split(" ", 1)[1] for line in imports_of_test_modules(tmp_path, files)]
    assert sorted(found) == sorted(["imports e2e.test_split"] * 3 + ["imports e2e.test_chain", "imports test_flood",
                                                                      "imports test_milter"])


def test_no_test_module_is_imported_by_another():
    found = imports_of_test_modules(ROOT, sorted(TESTS.rglob("*.py")))
    assert not found, ("test modules imported by other modules under tests/ (move what they share to "
                       "tests/support/<topic>.py or a conftest.py):\n" + "\n".join(found))
