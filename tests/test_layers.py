"""The layout keeps itself: no import circles, and no module imports from a layer above its own.

Every ``import`` and ``from ... import`` in ``deltaiqa_lite/`` and ``convert/`` is
read with ``ast`` (imports inside functions too: a lazy import is still a
dependency); imports under ``if TYPE_CHECKING:`` are annotations only and do
not count. Layers are listed lowest first; a module may import from its own
layer's package and from lower layers only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Lowest first. A name is a module or a package (its modules belong to it).
RUNTIME_LAYERS = [
    ["deltaiqa_lite._version", "deltaiqa_lite.errors"],
    ["deltaiqa_lite.read", "deltaiqa_lite.model", "deltaiqa_lite.physics"],
    ["deltaiqa_lite.explain"],
    ["deltaiqa_lite.score"],
    ["deltaiqa_lite.validate", "deltaiqa_lite.output"],
    ["deltaiqa_lite.engine"],
    ["deltaiqa_lite.qa"],
    ["deltaiqa_lite.dashboard"],
    ["deltaiqa_lite.commands"],
    ["deltaiqa_lite.cli", "deltaiqa_lite.__main__", "deltaiqa_lite"],
]
BUILD_LAYERS = [
    ["convert.sim"],
    ["convert.checks"],
    ["convert.train"],
    ["convert.card"],
    ["convert.quant"],
    ["convert.pipeline", "convert.adapt"],
    ["convert.__main__", "convert"],
]
#: Peers in one layer that must not import each other either (they are independent parts).
INDEPENDENT_PEERS = [("deltaiqa_lite.read", "deltaiqa_lite.model", "deltaiqa_lite.physics")]


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (the most specific known module of each import)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        candidates = []
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                          for alias in node.names]
        for candidate in candidates:
            parts = candidate.split(".")
            for end in range(len(parts), 0, -1):
                if ".".join(parts[:end]) in known:
                    targets.add(".".join(parts[:end]))
                    break
    targets.discard(name)
    return targets


def graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    files = module_files(root, packages)
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def layer_of(module: str, layers: list[list[str]]) -> tuple[int, str]:
    """(layer index, owning unit) of a module: the longest unit name that contains it."""
    best = None
    for index, units in enumerate(layers):
        for unit in units:
            if module == unit or module.startswith(unit + "."):
                if best is None or len(unit) > len(best[1]):
                    best = (index, unit)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add it to the layer table in {__file__}")
    return best


def find_circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return circles


def layering_violations(edges: dict[str, set[str]], layers: list[list[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(edges.items()):
        # A package's __init__ may re-export its own modules.
        own_layer, own_unit = layer_of(module, layers)
        for target in sorted(targets):
            if target.startswith(module + "."):
                continue
            target_layer, target_unit = layer_of(target, layers)
            if target_layer > own_layer:
                problems.append(f"{module} imports {target}: upward ({own_unit} is below {target_unit})")
            elif target_layer == own_layer and target_unit != own_unit:
                for peers in INDEPENDENT_PEERS:
                    if own_unit in peers and target_unit in peers:
                        problems.append(f"{module} imports {target}: {own_unit} and {target_unit} are "
                                        "independent peers")
    return problems


def test_runtime_has_no_import_circle():
    edges = graph(REPO, ("deltaiqa_lite",))
    assert find_circles(edges) == []


def test_build_has_no_import_circle():
    edges = graph(REPO, ("convert",))
    assert find_circles(edges) == []


def test_runtime_imports_only_downwards():
    assert layering_violations(graph(REPO, ("deltaiqa_lite",)), RUNTIME_LAYERS) == []


def test_build_imports_only_downwards():
    edges = graph(REPO, ("convert",))
    # convert may use the runtime (never the reverse): keep only edges inside convert here
    assert layering_violations(edges, BUILD_LAYERS) == []


def test_runtime_never_imports_the_build():
    edges = graph(REPO, ("deltaiqa_lite", "convert"))
    leaks = [f"{m} imports {t}" for m, ts in edges.items() if m.startswith("deltaiqa_lite")
             for t in ts if t.split(".")[0] == "convert"]
    assert leaks == []


def _plant(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return graph(tmp_path, ("deltaiqa_lite",))


def test_a_planted_circle_is_found(tmp_path):
    edges = _plant(tmp_path, {
        "deltaiqa_lite/__init__.py": "",
        "deltaiqa_lite/score.py": "from deltaiqa_lite.explain import gradcam\n",
        "deltaiqa_lite/explain/__init__.py": "",
        "deltaiqa_lite/explain/gradcam.py": "def f():\n    from deltaiqa_lite.score import Scorer\n",
    })
    assert find_circles(edges) == [["deltaiqa_lite.explain.gradcam", "deltaiqa_lite.score"]]
    assert layering_violations(edges, RUNTIME_LAYERS) == [
        "deltaiqa_lite.explain.gradcam imports deltaiqa_lite.score: upward "
        "(deltaiqa_lite.explain is below deltaiqa_lite.score)"]


def test_a_planted_upward_import_is_found_and_type_checking_is_not(tmp_path):
    edges = _plant(tmp_path, {
        "deltaiqa_lite/__init__.py": "",
        "deltaiqa_lite/qa/__init__.py": "",
        "deltaiqa_lite/qa/options.py": "from deltaiqa_lite.commands._args import positive_int\n",
        "deltaiqa_lite/commands/__init__.py": "",
        "deltaiqa_lite/commands/_args.py": "",
        "deltaiqa_lite/model/__init__.py": "",
        "deltaiqa_lite/model/preprocess.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                              "    from deltaiqa_lite.read import Slice\n"),
        "deltaiqa_lite/read/__init__.py": "from . import policy\n",
        "deltaiqa_lite/read/policy.py": "from ..physics import flags\n",
        "deltaiqa_lite/physics/__init__.py": "",
        "deltaiqa_lite/physics/flags.py": "",
    })
    assert layering_violations(edges, RUNTIME_LAYERS) == [
        "deltaiqa_lite.qa.options imports deltaiqa_lite.commands._args: upward "
        "(deltaiqa_lite.qa is below deltaiqa_lite.commands)",
        "deltaiqa_lite.read.policy imports deltaiqa_lite.physics.flags: deltaiqa_lite.read and "
        "deltaiqa_lite.physics are independent peers"]


@pytest.mark.parametrize("old, new", [("deltaiqa_lite.preprocess", "deltaiqa_lite.model.preprocess"),
                                      ("deltaiqa_lite.write", "deltaiqa_lite.output.write"),
                                      ("deltaiqa_lite.label_rule", "deltaiqa_lite.physics.label_rule")])
def test_old_module_paths_still_import(old, new):
    import importlib

    assert importlib.import_module(old) is importlib.import_module(new)


def test_every_moved_module_has_a_home():
    import importlib

    import deltaiqa_lite

    for old, new in deltaiqa_lite.MOVED_MODULES.items():
        assert importlib.import_module(old) is importlib.import_module(new), old


def test_every_package_says_its_layer():
    for init in sorted([*(REPO / "deltaiqa_lite").rglob("__init__.py"), *(REPO / "convert").rglob("__init__.py")]):
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if init.parent.name in ("deltaiqa_lite",):
            continue
        assert "Layer" in docstring or "layer" in docstring, f"{init.relative_to(REPO)}: no layer rule in docstring"
