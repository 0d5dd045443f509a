"""The import graph of maskrcnnlib: no circle, and no private name used across files.

Imports are read from the source with ``ast``, at every level (module, class,
function), so an import deferred into a function still counts. An import is an
edge to the most specific maskrcnnlib module it names: ``from maskrcnnlib.a
import b`` goes to ``maskrcnnlib.a.b`` when that is a module, else to
``maskrcnnlib.a``. A *private* name is one with a leading underscore (dunder
names such as ``__version__`` are public); a module may not import one from
another maskrcnnlib module, nor read one as ``module._name``.
"""
import ast
import importlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "maskrcnnlib"


def module_name(path, root=LIBRARY):
    """maskrcnnlib.a.b for root/a/b.py, maskrcnnlib.a for root/a/__init__.py."""
    parts = (root.name,) + path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_sources(root=LIBRARY):
    """{module name: (source text, is a package)} of every .py file below root."""
    return {module_name(path, root): (path.read_text(), path.name == "__init__.py")
            for path in sorted(root.rglob("*.py")) if "__pycache__" not in path.parts}


def is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(node, module, is_package):
    """The module an ImportFrom node imports from, relative imports resolved."""
    if not node.level:
        return node.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def read_imports(module, source, modules, is_package=False):
    """(maskrcnnlib modules imported, private names used) by one module's source.

    modules: every module name of the library. Private uses are strings such
    as "maskrcnnlib.a._helper (line 12)".
    """
    tree = ast.parse(source)
    targets, private, aliases = set(), [], {}
    prefix = module.split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == prefix:
                    targets.add(alias.name)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source_module = _absolute(node, module, is_package)
            if not source_module or source_module.split(".")[0] != prefix:
                continue
            for alias in node.names:
                submodule = "{}.{}".format(source_module, alias.name)
                if submodule in modules:
                    targets.add(submodule)
                    aliases[alias.asname or alias.name] = submodule
                    continue
                targets.add(source_module)
                if is_private(alias.name):
                    private.append("{}.{} (line {})".format(source_module, alias.name,
                                                            node.lineno))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and is_private(node.attr)):
            private.append("{}.{} (line {})".format(aliases[node.value.id], node.attr,
                                                    node.lineno))
    targets.discard(module)
    return targets, private


def import_graph(sources):
    """{module: set of maskrcnnlib modules it imports} and {module: private uses}."""
    modules = set(sources)
    graph, private = {}, {}
    for module, (source, is_package) in sources.items():
        targets, uses = read_imports(module, source, modules, is_package)
        graph[module] = {target for target in targets if target in modules}
        if uses:
            private[module] = uses
    return graph, private


def find_cycles(graph):
    """Circles of the graph, each as a list [a, b, ..., a]; one per strongly connected part."""
    index, low, stack, on_stack, parts = {}, {}, [], set(), []

    def connect(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            part = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.add(member)
                if member == node:
                    break
            parts.append(part)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_circle_in(part, graph) for part in parts
            if len(part) > 1 or any(node in graph.get(node, ()) for node in part)]


def _circle_in(part, graph):
    """One circle through the smallest-named module of a strongly connected part."""
    start = min(part)
    paths, seen = {start: [start]}, {start}
    queue = [start]
    while queue:  # breadth first: the shortest way back to start
        node = queue.pop(0)
        for target in sorted(graph.get(node, ())):
            if target == start:
                return paths[node] + [start]
            if target in part and target not in seen:
                seen.add(target)
                paths[target] = paths[node] + [target]
                queue.append(target)
    raise AssertionError("no circle through {}".format(start))


# ---------------------------------------------------------------- the checker itself


def test_a_circle_through_a_function_level_import_is_found_and_named():
    sources = {
        "pkg": ("", True),
        "pkg.a": ("from pkg.b import helper\n", False),
        "pkg.b": ("def helper():\n    from pkg import c\n    return c\n", False),
        "pkg.c": ("import pkg.a\n", False),
        "pkg.d": ("from pkg.a import x\n", False),
    }
    graph, _ = import_graph(sources)
    assert graph["pkg.b"] == {"pkg.c"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    sources["pkg.c"] = ("import os\n", False)
    assert find_cycles(import_graph(sources)[0]) == []


def test_relative_imports_and_package_modules_resolve():
    sources = {
        "pkg": ("", True),
        "pkg.sub": ("from . import one\nfrom .one import value\n", True),
        "pkg.sub.one": ("from .. import top\nfrom ..top import _hidden\n", False),
        "pkg.top": ("from pkg.sub import one\n", False),
    }
    graph, private = import_graph(sources)
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.one"},
                     "pkg.sub.one": {"pkg.top"}, "pkg.top": {"pkg.sub.one"}}
    assert private == {"pkg.sub.one": ["pkg.top._hidden (line 2)"]}
    assert find_cycles(graph) == [["pkg.sub.one", "pkg.top", "pkg.sub.one"]]


def test_private_names_imported_or_read_through_a_module_are_found():
    sources = {
        "pkg": ("__version__ = '1'\n", True),
        "pkg.a": ("_cache = {}\ndef _helper():\n    pass\n", False),
        "pkg.b": ("from pkg import __version__\nfrom pkg.a import _helper\n", False),
        "pkg.c": ("from pkg import a\nimport pkg.a as alias\n\n"
                  "def f():\n    return a._cache, alias._helper, a.__name__\n", False),
    }
    _, private = import_graph(sources)
    assert private == {"pkg.b": ["pkg.a._helper (line 2)"],
                       "pkg.c": ["pkg.a._cache (line 5)", "pkg.a._helper (line 5)"]}


# ---------------------------------------------------------------- maskrcnnlib


def test_maskrcnnlib_has_no_import_circle():
    graph, _ = import_graph(library_sources())
    assert len(graph) > 20 and "maskrcnnlib.grassio.writer" in graph
    cycles = find_cycles(graph)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_maskrcnnlib_modules_use_only_public_names_of_each_other():
    _, private = import_graph(library_sources())
    assert not private, "private names used across files: " + "; ".join(
        "{} uses {}".format(module, ", ".join(uses)) for module, uses in sorted(private.items()))


def needs_grass(source):
    """Whether a module imports GRASS's Python package (only there in a GRASS session)."""
    tree = ast.parse(source)
    return any(alias.name.split(".")[0] == "grass" for node in ast.walk(tree)
               if isinstance(node, ast.Import) for alias in node.names) or any(
        (node.module or "").split(".")[0] == "grass" for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and not node.level)


@pytest.fixture(scope="module")
def grass_python():
    """Whether GRASS's Python package can be imported, put on sys.path if GRASS is here."""
    if importlib.util.find_spec("grass") is None and shutil.which("grass"):
        from conftest import grass_config

        path = grass_config("python_path")
        if path not in sys.path:
            sys.path.insert(0, path)
        importlib.invalidate_caches()
    return importlib.util.find_spec("grass") is not None


@pytest.mark.parametrize("module", sorted(library_sources()))
def test_every_module_imports(module, grass_python):
    source, _ = library_sources()[module]
    if needs_grass(source) and not grass_python:
        pytest.skip("imports GRASS's Python package, and GRASS is not installed")
    importlib.import_module(module)
