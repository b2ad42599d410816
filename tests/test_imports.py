"""Imports point down: the rules of DESIGN.md ("rm/ never imports evaluate/, no package imports
its importers, no circles") checked on longrm's import graph, built by grimp from the source
(every import counts: module level, inside functions, and under TYPE_CHECKING).

The checker is tested on small packages written to a temporary folder, each with one planted
violation, so a rule that stopped finding anything would fail here too.
"""

from __future__ import annotations

import ast
import graphlib
import importlib.util
import textwrap
from pathlib import Path

import grimp
import pytest

#: (importer, imported): no chain of imports may lead from the first package (or module) to the
#: second; names are relative to the package checked.
FORBIDDEN = (
    ("rm", "evaluate"),  # reward models are used by the evaluation, never the other way round
    ("rm", "serve"),
    ("bon", "serve"),  # Best-of-N is a library step; the service calls it
)


def _is_cli(module: str, package: str) -> bool:
    """Return True for the command-line layer: `cli`, `cli_*` and `__main__` at the top."""
    name = module.removeprefix(package + ".")
    return name in ("cli", "__main__") or name.startswith("cli_")


def import_graph(package: str) -> grimp.ImportGraph:
    """Return the package's import graph, TYPE_CHECKING imports included.

    The package root (`longrm/__init__.py`) is the public facade: its lazy exports (imports
    inside its `__getattr__`, and their mirror under TYPE_CHECKING for type checkers) run only
    when a user touches them, after every module has loaded, so they are left out; anything
    else it imports counts, and so do every other module's TYPE_CHECKING imports.
    """
    graph = grimp.build_graph(package, exclude_type_checking_imports=False, cache_dir=None)
    lazy = _lines_of_lazy_exports(package)
    for imported in graph.find_modules_directly_imported_by(package):
        details = graph.get_import_details(importer=package, imported=imported)
        if details and all(d["line_number"] in lazy for d in details):
            graph.remove_import(importer=package, imported=imported)
    return graph


def _lines_of_lazy_exports(package: str) -> set[int]:
    """Return the line numbers of the imports in the package's __init__.py that are inside a
    function or under `if TYPE_CHECKING:`.
    """
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not importable"
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    blocks: list[ast.AST] = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        or (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))
    ]
    return {
        node.lineno
        for block in blocks
        for node in ast.walk(block)
        if isinstance(node, ast.Import | ast.ImportFrom)
    }


def _where(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    """Return 'importer:line (code)' of the first import of `imported` by `importer`."""
    details = graph.get_import_details(importer=importer, imported=imported)
    if not details:
        return f"{importer} -> {imported}"
    first = details[0]
    return f"{importer}:{first['line_number']} ({first['line_contents']})"


def forbidden_chains(graph: grimp.ImportGraph, package: str) -> list[str]:
    """Return one line per chain of imports that breaks a FORBIDDEN rule."""
    found = []
    for importer, imported in FORBIDDEN:
        source, target = f"{package}.{importer}", f"{package}.{imported}"
        if source not in graph.modules or target not in graph.modules:
            continue
        for chain in graph.find_shortest_chains(importer=source, imported=target, as_packages=True):
            steps = [_where(graph, a, b) for a, b in zip(chain, chain[1:], strict=False)]
            found.append(f"{importer} -> {imported}: " + " -> ".join(steps))
    return sorted(found)


def cli_imports(graph: grimp.ImportGraph, package: str) -> list[str]:
    """Return one line per library module that imports the command-line layer.

    A chain from the library into the CLI has a direct step into it, so direct imports suffice.
    """
    found = []
    for module in sorted(graph.modules):
        if _is_cli(module, package):
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if _is_cli(imported, package):
                found.append(f"{module} imports the CLI: {_where(graph, module, imported)}")
    return found


def import_cycle(graph: grimp.ImportGraph) -> list[str]:
    """Return the steps of one import cycle among the package's modules, [] when there is none."""
    sorter = graphlib.TopologicalSorter(
        {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    )
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        cycle = err.args[1]  # [a, b, ..., a]: each imported by the next one
        return [_where(graph, a, b) for a, b in zip(cycle[1:], cycle, strict=False)]
    return []


def violations(package: str) -> list[str]:
    """Return every broken import rule in `package`, one line each ([] when it keeps them)."""
    graph = import_graph(package)
    cycle = import_cycle(graph)
    return [
        *forbidden_chains(graph, package),
        *cli_imports(graph, package),
        *(["import cycle: " + " -> ".join(cycle)] if cycle else []),
    ]


def test_longrm_imports_point_down() -> None:
    problems = violations("longrm")
    assert not problems, "imports that break DESIGN.md's direction:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# The checker on small packages with one planted violation each

_CLEAN = {
    "__init__.py": 'from typing import TYPE_CHECKING\n\nVERSION = "0"\n\nif TYPE_CHECKING:\n'
    "    from toy.evaluate.run import run\n\n\ndef __getattr__(name):\n"
    "    from toy.evaluate import run\n\n    return run\n",
    "items.py": "X = 1\n",
    "rm/__init__.py": "",
    "rm/base.py": "from toy.items import X\n",
    "evaluate/__init__.py": "",
    "evaluate/run.py": "from toy import VERSION, items\nfrom toy.rm import base\n\n\n"
    "def run(): ...\n",
    "serve/__init__.py": "from toy.bon import pick\n",
    "bon.py": "from toy.rm.base import X\n\n\ndef pick(): ...\n",
    "cli_common.py": "from toy.items import X\n",
    "cli.py": "from toy.cli_common import X\nfrom toy.evaluate import run\n",
}


def _write(root: Path, package: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Return a writer of a fresh toy package (a new name each call: grimp looks it up)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made = []

    def make(changes: dict[str, str]) -> str:
        name = f"toy{len(made)}"
        files = {k: v.replace("toy", name) for k, v in {**_CLEAN, **changes}.items()}
        _write(tmp_path, name, files)
        made.append(name)
        return name

    return make


def test_checker_passes_a_clean_package(toy) -> None:
    assert violations(toy({})) == []


def test_checker_finds_rm_importing_evaluate(toy) -> None:
    name = toy({"rm/base.py": "from toy.items import X\nfrom toy.evaluate.run import run\n"})
    problems = violations(name)
    assert any(p.startswith("rm -> evaluate") and f"{name}.rm.base:2" in p for p in problems)


def test_checker_finds_an_indirect_chain(toy) -> None:
    # rm -> items -> serve: no direct import, still an upward dependency
    name = toy({"items.py": "X = 1\n\n\ndef later():\n    from toy.serve import pick\n"})
    problems = violations(name)
    assert any(p.startswith("rm -> serve") and f"{name}.items:5" in p for p in problems)


def test_checker_finds_bon_importing_serve(toy) -> None:
    name = toy({"serve/__init__.py": "", "bon.py": "from toy.serve import app\n"})
    assert any(p.startswith("bon -> serve") for p in violations(name))


def test_checker_finds_a_library_module_importing_the_cli(toy) -> None:
    name = toy({"items.py": "from toy.cli_common import Y\n"})
    assert f"{name}.items imports the CLI: {name}.items:1 (from {name}.cli_common import Y)" in (
        violations(name)
    )


def test_checker_finds_a_cycle_under_type_checking(toy) -> None:
    # the synth circle's shape: a runtime import one way, a TYPE_CHECKING import back
    name = toy(
        {
            "items.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
            "    from toy.rm.base import X\n",
        }
    )
    problems = violations(name)
    cycles = [p for p in problems if p.startswith("import cycle")]
    assert len(cycles) == 1
    assert f"{name}.items:4" in cycles[0] and f"{name}.rm.base:1" in cycles[0]


def test_checker_exempts_only_the_facades_lazy_exports(toy) -> None:
    # evaluate.run reads the facade's VERSION: a facade that imports it at module level (not in
    # its __getattr__) closes a cycle
    name = toy({"__init__.py": 'VERSION = "0"\nfrom toy.evaluate.run import run\n'})
    assert any(p.startswith("import cycle") for p in violations(name))
