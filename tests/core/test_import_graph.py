"""No import cycle through the packages of representative interpretations and
topics (issue 15: methods/topics.py <-> methods/_interpretive.py was one), and
no private name imported from another package.  Every import counts,
function-level (lazy) ones included: a lazy import still ties two modules
together.  Static: the sources are parsed, nothing is imported."""
import ast
from pathlib import Path

import interp_engine

ROOT = Path(interp_engine.__file__).resolve().parent
MINE = ("interp_engine.methods.representative", "interp_engine.methods.topics", "interp_engine.methods._interpretive",
        "interp_engine.report.represent_page", "interp_engine.report.topics_page", "interp_engine.capture")


def _modules():
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name, path, modules):
    """(module imported, names imported from it) for every import statement of the module."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            # `from pkg import submodule` imports the submodule
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            for s in subs:
                yield s, []
            yield target, [n for n in names if f"{target}.{n}" not in modules]


def _graph():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for target, _ in _imports(name, path, modules):
            if target in modules and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def _mine(name):
    return any(name == m or name.startswith(m + ".") for m in MINE)


def test_no_import_cycle_through_these_packages():
    graph = _graph()
    # a package imports its own submodules (its __init__ re-exports them): not a cycle with them
    def deps(n):
        return {d for d in graph[n] if not n.startswith(d + ".")}

    cycles = []
    for start in [n for n in graph if _mine(n)]:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for d in deps(node):
                if d == start:
                    cycles.append(path + [d])
                elif d not in seen and d in graph:
                    seen.add(d)
                    stack.append((d, path + [d]))
    assert not cycles, cycles[:5]


def test_no_private_name_from_another_package():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        if not _mine(name):
            continue
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for target, names in _imports(name, path, modules):
            for n in names:
                other_package = not (target == package or target.startswith(package + "."))
                if n.startswith("_") and not n.startswith("__") and other_package:
                    bad.append(f"{name}: from {target} import {n}")
    assert not bad, bad
