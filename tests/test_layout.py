"""The layout shows the architecture: no import cycle between the suite's modules, and a
module imported inside a function only where that saves start-up time, with a comment
that says so; every declared dependency is imported somewhere, and every third-party
package imported is declared."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("iwgan", "baselines")


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(node, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:   # relative
        base = module.split(".")[: len(module.split(".")) - node.level + is_package]
        node_module = ".".join(base + ([node.module] if node.module else []))
    else:
        node_module = node.module or ""
    return [node_module] + [f"{node_module}.{a.name}" for a in node.names]


def top_level_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported(node, name, path.name == "__init__.py"):
                    if target in mods and target != name:
                        deps.add(target)
        graph[name] = deps
    return graph


def test_no_import_cycle_between_the_suites_modules():
    graph = top_level_graph()
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, node, dep]))
            if dep not in state:
                visit(dep, [*stack, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_an_import_inside_a_function_says_why():
    unexplained = []
    for path in modules().values():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    line, above = lines[sub.lineno - 1], lines[sub.lineno - 2].strip()
                    if "#" not in line and not above.startswith("#"):
                        unexplained.append(f"{path.relative_to(ROOT)}:{sub.lineno}: "
                                           f"{line.strip()}")
    assert unexplained == []


# distribution name -> import name, where they differ
IMPORT_NAMES = {"pot": "ot", "pytorch-fid": "pytorch_fid", "scikit-learn": "sklearn",
                "pillow": "PIL"}


IMPORT_NAMES["dask[distributed]"] = "distributed"


def declared(group: str | None = None) -> set[str]:
    """The import names of the project's dependencies, or of one optional group."""
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in specs}
    return {IMPORT_NAMES.get(n, n.split("[")[0]) for n in names}


def third_party_imports() -> set[str]:
    found = set()
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                for alias in (node.names if isinstance(node, ast.Import) else [node]):
                    top = (alias.name if isinstance(node, ast.Import) else node.module)
                    top = top.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES \
                            and top != "__future__":
                        found.add(top)
    return found


def test_declared_dependencies_are_the_imported_ones():
    # The optional cluster engines are imported (only) by their executors.
    assert third_party_imports() == declared() | declared("cluster")
