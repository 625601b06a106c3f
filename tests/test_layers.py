"""The shape of the code (../shared/docs/architecture.md, issue 11 item 7), walked from the source: every
`import` of every module under src/kvfit, at module level or inside a function, resolved to the kvfit module
it names. The graph must have no cycle; nothing below the command line may import it; the use cases
(kvfit.app) are imported only by the entry points (the command line and the Python API, kvfit.api); and the
pure core imports none of the edges."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "kvfit"

CORE = ("kvfit.errors", "kvfit.units", "kvfit.settings", "kvfit.flags", "kvfit.arch", "kvfit.kv", "kvfit.memory",
        "kvfit.plan", "kvfit.launch", "kvfit.gpu.model")
EDGES = ("kvfit.sources", "kvfit.gpu.catalog", "kvfit.gpu.nvml", "kvfit.engine", "kvfit.render", "kvfit.app",
         "kvfit.cli", "kvfit.bench", "kvfit.logs")


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:          # `from kvfit.plan import goals` names a module or a symbol
            target = target.rpartition(".")[0]
        if target:
            out.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("kvfit"):
                    add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("kvfit"):
                continue
            for a in node.names:
                cand = f"{mod}.{a.name}"
                add(cand if cand in known else mod)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def under(mod: str, prefixes) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def test_the_walk_sees_the_imports():
    g = graph()
    assert "kvfit.plan.evaluate" in g["kvfit.plan.planner"]
    assert "kvfit.app.check" in g["kvfit.cli.commands"]          # a function-level import is seen too
    assert len(g) > 60


def test_no_import_cycle():
    g = graph()
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):                                            # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    import sys

    sys.setrecursionlimit(10_000)
    for v in g:
        if v not in index:
            visit(v)
    cycles = [sorted(c) for c in sccs if len(c) > 1]
    # a package's __init__ re-exporting its own submodules is not a cycle between layers
    cycles = [c for c in cycles if not all(x.startswith(c[0].rsplit(".", 1)[0]) and
                                           any(y == c[0].rsplit(".", 1)[0] for y in c) for x in c)]
    assert cycles == [], cycles


def test_nothing_imports_the_command_line():
    bad = [(m, i) for m, deps in graph().items() for i in deps
           if under(i, ("kvfit.cli",)) and not under(m, ("kvfit.cli", "kvfit.__main__"))]
    assert bad == [], bad


def test_only_the_entry_points_import_the_use_cases():
    bad = [(m, i) for m, deps in graph().items() for i in deps
           if under(i, ("kvfit.app",)) and not under(m, ("kvfit.cli", "kvfit.api", "kvfit.app", "kvfit.bench"))]
    assert bad == [], bad


def test_the_core_imports_no_edge():
    bad = [(m, i) for m, deps in graph().items() if under(m, CORE) for i in deps if under(i, EDGES)]
    assert bad == [], bad
