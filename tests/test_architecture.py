"""The layering the code promises (README "Architecture"): no import circle, no upward import from wor/ into
tasks/, nothing below the CLI imports it, and every verb opens models through `pert.models` alone."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pert"
# the modules of the verbs that open a model: they call pert.models, never the steps it is made of
OPENERS = ["qa.py", "wor/restore.py", "serve/perlm.py", "serve/app.py", "tasks/loop.py", "convert/info.py",
           "convert/onnx.py", "training/loop.py"]
STEPS = {"resolve_model", "load_tokenizer", "check_model_folder", "resolve_runtime", "load_config",
         "read_training_info", "default_precision"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every pert module -> the pert modules it imports, at module level or inside functions (lazily)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pert"):
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("pert")]
            else:
                continue
            # the deepest name that is a module: `from pert.tasks.loop import finetune` -> pert.tasks.loop
            graph[name] |= {next(t for t in targets if t in modules)} if any(t in modules for t in targets) else set()
    for m in graph:
        graph[m].discard(m)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_circle():
    assert cycles(imports()) == []


def test_layers_import_only_downwards():
    graph = imports()
    upward = [(m, t) for m, targets in graph.items() for t in targets
              if (m.startswith("pert.wor") and t.startswith("pert.tasks"))
              or (t == "pert.cli" and m != "pert.__main__")]
    assert upward == []


def test_verbs_open_models_through_one_entry_point():
    calls = []
    for rel in OPENERS:
        for node in ast.walk(ast.parse((SRC / rel).read_text("utf-8"))):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name in STEPS:
                    calls.append(f"{rel}:{node.lineno} {name}")
    assert calls == []
