"""The layout shows the architecture: the suite's folders are floors and no import runs up a
floor; no import cycle between the suite's modules, and a module imported inside a
function only where that saves start-up time, with a comment that says so; every declared
dependency is imported somewhere, and every third-party package imported is declared."""

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


# The floors, lowest first: a module imports from its own floor and those below, never
# from one above (at module level or inside a function). Files written atomically are the
# ground; the core (the method interface and registry, the networks, the losses, iWGAN,
# the duality gap) imports no baseline, and finds every method, built-in or not, by name
# at run time; the baselines are methods on the core; the data; the engine (configs, the
# trainer, stacking, records, executors); the metrics (which score what the engine
# trains); the reports (rebuilt from results alone); the experiments, which train, score
# and then rebuild their reports; the command line on top.
FLOORS = (
    ("iwgan", "iwgan.files"),
    ("iwgan.core",),
    ("baselines",),
    ("iwgan.data",),
    ("iwgan.engine",),
    ("iwgan.metrics",),
    ("iwgan.reporting",),
    ("iwgan.experiments",),
    ("iwgan.cli", "iwgan.__main__"),
)


def floor_of(module: str) -> int:
    """The floor of a module: that of the longest prefix FLOORS names."""
    found = [(len(prefix), i) for i, floor in enumerate(FLOORS) for prefix in floor
             if module == prefix or module.startswith(prefix + ".")]
    assert found, f"{module} is on no floor: add it to FLOORS in tests/test_layout.py"
    return max(found)[1]


def test_every_module_is_on_a_floor_and_no_import_runs_up_one():
    upward = []
    for name, path in sorted(modules().items()):
        mine = floor_of(name)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in imported(node, name, path.name == "__init__.py"):
                if target.split(".")[0] in PACKAGES and floor_of(target) > mine:
                    upward.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name} "
                                  f"({FLOORS[mine][0]}) imports {target} "
                                  f"({FLOORS[floor_of(target)][0]})")
    assert upward == []


def test_the_floor_check_sees_an_upward_import():
    """The check itself: the imports the layout once had, each running up a floor."""
    assert floor_of("iwgan.core.duality_gap") < floor_of("baselines.wgan_gp")
    assert floor_of("iwgan.data.datasets") < floor_of("iwgan.engine.records")
    assert floor_of("iwgan.engine.config") < floor_of("iwgan.metrics.plateau")
    assert floor_of("iwgan.reporting.convergence") < floor_of("iwgan.experiments.mode_coverage")
    assert floor_of("iwgan.core.methods") == floor_of("iwgan.core.iwgan")


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
