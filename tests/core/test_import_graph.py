"""No import cycle through the packages of representative interpretations and
topics (issue 15: methods/topics.py <-> methods/_interpretive.py was one), no
private name imported from another package, and no private (``_``-prefixed)
module imported from outside the package that holds it (the methods and
reports once imported ``interp_engine.engine._arrays``).  Every import counts,
function-level (lazy) ones included: a lazy import still ties two modules
together.  Static: the sources are parsed, nothing is imported."""
import ast
from pathlib import Path

import interp_engine

ROOT = Path(interp_engine.__file__).resolve().parent
MINE = ("interp_engine.methods.representative", "interp_engine.methods.topics", "interp_engine.methods._interpretive",
        "interp_engine.report.represent_page", "interp_engine.report.topics_page", "interp_engine.capture")


def _modules(root=ROOT):
    out = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
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



def _private_owner(target):
    """The package a private module (a ``_``-prefixed part of the dotted name, not a dunder) belongs
    to: ``interp_engine.engine`` for ``interp_engine.engine._arrays``; None for a public module."""
    parts = target.split(".")
    for i, p in enumerate(parts[1:], 1):
        if p.startswith("_") and not p.startswith("__"):
            return ".".join(parts[:i])
    return None


def _private_module_imports(modules):
    """``"importer imports target"`` for every import of a private module from outside its package."""
    bad = []
    for name, path in modules.items():
        for target, _ in _imports(name, path, modules):
            owner = _private_owner(target) if target.startswith("interp_engine.") else None
            if owner is not None and not (name == owner or name.startswith(owner + ".")):
                bad.append(f"{name} imports {target}")
    return sorted(set(bad))


def test_no_private_module_of_another_package():
    """A ``_``-prefixed module is private to the package that holds it: ``interp_engine.engine._x`` may be
    imported from ``interp_engine.engine`` and its subpackages only (the methods, reports, data, models,
    capture, CLI and the top level use the engine's public modules, such as
    ``interp_engine.engine.checks``), and ``interp_engine._npz`` from the whole package."""
    bad = _private_module_imports(_modules())
    assert not bad, bad


def test_the_private_module_rule_sees_every_kind_of_import(tmp_path):
    """The rule above catches `import a._b`, `from a._b import c`, `from a import _b` and the relative
    forms from another package, and lets the package itself use its private module."""
    pkg = tmp_path / "interp_engine"
    for sub in ("engine", "methods"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "_shared.py").write_text("z = 1\n")
    (pkg / "engine" / "_x.py").write_text("y = 1\n")
    (pkg / "engine" / "ok.py").write_text("from ._x import y\nfrom . import _x\nfrom .._shared import z\n")
    (pkg / "methods" / "ok.py").write_text("from ..engine import ok\nfrom .._shared import z\n")
    forms = ["import interp_engine.engine._x", "from interp_engine.engine._x import y",
             "from interp_engine.engine import _x", "from ..engine._x import y", "from ..engine import _x",
             "from .. import engine\nfrom ..engine import _x as x"]
    for i, code in enumerate(forms):
        (pkg / "methods" / f"m{i}.py").write_text(code + "\n")
    bad = _private_module_imports(_modules(pkg))
    assert bad == [f"interp_engine.methods.m{i} imports interp_engine.engine._x" for i in range(len(forms))], bad
