"""The package's layers: data flows one way, ``spec/records → store → models → train → evaluate → gates →
executors → loop → cli/server/report/demo``. A lower layer never imports a higher one (not even inside a
function), and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "loopgate"

# the first name under ``loopgate`` → its layer; higher layers may import lower ones only
LAYERS: dict[str, int] = {
    "errors": 0, "identity": 0, "names": 0, "hashing": 0, "jsonl": 0, "records": 0, "spec": 0,
    "store": 1,
    "models": 2,
    "train": 3,
    "evaluate": 4,
    "gates": 5,
    "executors": 6,
    "loop": 7,
    "cli": 8, "server": 8, "report": 8, "demo": 8, "__main__": 8,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every ``loopgate`` module the file imports, at module level or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "loopgate")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "loopgate":
                continue
            for alias in node.names:  # ``from loopgate.x import y`` may name a submodule y
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        module = _module_name(path)
        graph[module] = {m for m in _imports(path, module) if m != module}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return 0  # the package itself
    assert parts[1] in LAYERS, f"{module}: put its top-level name in a layer in tests/test_layers.py"
    return LAYERS[parts[1]]


def test_no_lower_layer_imports_a_higher_one() -> None:
    graph = _graph()
    wrong = sorted(f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
                   for m, targets in graph.items() for t in targets
                   if len(m.split(".")) > 1 and _layer(t) > _layer(m))
    assert not wrong, "\n".join(wrong)


def test_no_import_circles() -> None:
    graph = _graph()
    # Tarjan's strongly connected components: any component of more than one module is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            # a package importing its own submodules (re-exports) is not a circle by itself
            members = [m for m in component if not any(o != m and o.startswith(m + ".") for o in component)]
            if len(component) > 1 and len(members) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, "\n".join(" ↔ ".join(c) for c in circles)


def test_the_layer_test_sees_imports() -> None:
    """Guard against a test that passes because it finds nothing."""
    graph = _graph()
    assert "loopgate.gates.context" in graph["loopgate.gates.cost"]
    assert "loopgate.models" in graph["loopgate.train.update"] or any(
        t.startswith("loopgate.models") for t in graph["loopgate.train.update"])


# ------------------------------------------------------------------------------------------- the store's walls
# Only ``loopgate/store/`` talks to the database (MLflow's store: the rest of the code never writes SQL): no other
# module imports SQLAlchemy or Alembic, imports a private name of a store module, or reaches into a store's
# privates (``store._tx``, ``ws.store._read``…).

DATABASE_PACKAGES = {"sqlalchemy", "alembic"}


def _store_wall_breaches(source: str, where: str) -> list[str]:
    """Where one module outside ``store/`` goes around the store: database imports, private store names."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{where}:{node.lineno} imports {a.name}" for a in node.names
                      if a.name.split(".")[0] in DATABASE_PACKAGES
                      or (a.name.startswith("loopgate.store") and any(p.startswith("_") for p in a.name.split(".")))]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = node.module or ""
            if module.split(".")[0] in DATABASE_PACKAGES:
                found.append(f"{where}:{node.lineno} imports {module}")
            elif module.startswith("loopgate.store"):
                found += [f"{where}:{node.lineno} imports {a.name} from {module}" for a in node.names
                          if a.name.startswith("_") or any(p.startswith("_") for p in module.split("."))]
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
              and _names_a_store(node.value)):
            found.append(f"{where}:{node.lineno} reaches into {ast.unparse(node)}")
    return found


def _names_a_store(node: ast.expr) -> bool:
    """``store``, ``self.store``, ``ws.store``, ``self._store``… — an expression whose last name is a store."""
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return name.lstrip("_") in {"store", "registry"}


def _outside_store() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] != "store"]


def test_only_the_store_talks_to_the_database() -> None:
    breaches = [b for path in _outside_store()
                for b in _store_wall_breaches(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))]
    assert not breaches, "\n".join(breaches)


def test_the_store_wall_check_sees_breaches() -> None:
    """Guard against a check that passes because it finds nothing: each kind of breach is caught, a public call
    is not, and the modules it scans are the package's own outside ``store/``."""
    source = ("import sqlalchemy.orm\nfrom alembic import op\nfrom loopgate.store.registry import _UNSEEN\n"
              "from loopgate.store import Store\n\ndef f(ws, store):\n    ws.store._read()\n    store._tx()\n"
              "    ws.store.version('a@1')\n")
    found = _store_wall_breaches(source, "probe.py")
    assert len(found) == 5, found
    assert any("ws.store._read" in f for f in found) and any("store._tx" in f for f in found)
    scanned = {str(p.relative_to(PACKAGE)) for p in _outside_store()}
    assert "demo/tamper.py" in scanned and "loop/tune.py" in scanned and "store/registry.py" not in scanned
