"""The import rules that keep the folder tree honest, read from the source (AST), not from a running import.

- `serve/` (the OpenAI-compatible peer) imports only itself, `engine/`, `audio/` and the leaf modules: a peer that
  imports the client's assumptions would repeat the client's mistakes.
- Nothing but the CLI imports `serve/`.
- `engine/` (the pure offline engine) imports only itself, `audio/` and the leaf modules.
- The leaf modules import no other part of pipeline/.
- No import cycles between modules, counting imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
LEAVES = {"pipeline", "pipeline.errors", "pipeline.clock", "pipeline.redact"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py") if path.name != "__main__.py"}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The pipeline modules this file imports (anywhere in it); `from a import b` counts a.b when b is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "pipeline")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found.update(submodules or {node.module})
            if len(submodules) < len(node.names):
                found.add(node.module)
    return {name for name in found if name in known}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, known) - {name} for name, path in modules.items()}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_graph_sees_the_real_imports() -> None:
    graph = _graph()
    assert "pipeline.serve.app" in graph["pipeline.cli"] or any(
        _within(m, "pipeline.serve") for m in graph["pipeline.cli"])
    assert "pipeline.sources.feeds" in graph["pipeline.sources"]


def test_serve_imports_only_engine_audio_and_leaves() -> None:
    allowed = ("pipeline.serve", "pipeline.engine", "pipeline.audio")
    wrong = {(module, imported) for module, imports in _graph().items() if _within(module, "pipeline.serve")
             for imported in imports
             if imported not in LEAVES and not any(_within(imported, prefix) for prefix in allowed)}
    assert not wrong, sorted(wrong)


def test_only_the_cli_imports_serve() -> None:
    wrong = {(module, imported) for module, imports in _graph().items()
             if module != "pipeline.cli" and not _within(module, "pipeline.serve")
             for imported in imports if _within(imported, "pipeline.serve")}
    assert not wrong, sorted(wrong)


def test_engine_imports_only_itself_audio_and_leaves() -> None:
    allowed = ("pipeline.engine", "pipeline.audio")
    wrong = {(module, imported) for module, imports in _graph().items() if _within(module, "pipeline.engine")
             for imported in imports
             if imported not in LEAVES and not any(_within(imported, prefix) for prefix in allowed)}
    assert not wrong, sorted(wrong)


def test_leaf_modules_import_no_other_part_of_pipeline() -> None:
    graph = _graph()
    wrong = {(leaf, imported) for leaf in LEAVES - {"pipeline"} for imported in graph[leaf] if imported != "pipeline"}
    assert not wrong, sorted(wrong)


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                cycles.append(path[path.index(imported):] + [imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_serve_reads_the_feed_the_client_writes() -> None:
    """serve keeps its own constants (see the module docstring); the names of the feed file are a shared contract."""
    from pipeline.outputs import podcast
    from pipeline.serve import feed

    assert (feed.FEED_NAME, feed.PODCAST) == (podcast.FEED_NAME, podcast.PODCAST)


def test_server_json_is_parsed_only_through_the_depth_limited_parser() -> None:
    """The client parses what a server sends with pipeline/providers/openai/server_json.py only: no `.json()` on a
    response and no json.loads anywhere in providers/ (a nesting attack is a RecursionError in both)."""
    offenders = []
    for path in (PACKAGE / "providers").rglob("*.py"):
        if path.name == "server_json.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                    node.func.attr == "json" and not node.args
                    or node.func.attr in ("loads", "load") and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "json"):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


def test_the_runner_names_no_concrete_provider() -> None:
    """The runner works through providers/base.py's contract alone: it imports no concrete provider, and asks a
    provider nothing through isinstance or getattr."""
    source = (PACKAGE / "runner.py").read_text()
    graph = _graph()
    concrete = {name for name in graph if _within(name, "pipeline.providers") and name not in (
        "pipeline.providers", "pipeline.providers.base")}
    assert not graph["pipeline.runner"] & concrete, graph["pipeline.runner"] & concrete
    tree = ast.parse(source)
    asked = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id in ("isinstance", "getattr") and node.args
             and isinstance(node.args[0], ast.Name) and node.args[0].id in ("provider", "active")]
    assert not asked, f"runner.py asks a provider past its contract at lines {asked}"


def _package(name: str) -> str:
    """pipeline.providers.openai.batch -> pipeline.providers; pipeline.runner -> pipeline.runner."""
    return ".".join(name.split(".")[:2])


def _package_graph() -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for name, imported in _graph().items():
        packages.setdefault(_package(name), set()).update(_package(other) for other in imported)
    return {package: imported - {package} for package, imported in packages.items()}


def test_no_import_cycles_between_packages() -> None:
    """A cycle between packages (plan imports providers while providers import plan) hides in a module graph
    that has none: one package cannot be read, tested or moved without the other."""
    graph = _package_graph()
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in path and nxt > start:  # each cycle once, from its smallest package
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, cycles



# Imports that would tie a stage to one that comes after it in the data path, or to the CLI's option table.
FORBIDDEN_PACKAGE_IMPORTS = {
    ("pipeline.sources", "pipeline.state"),
    ("pipeline.outputs", "pipeline.state"),
    ("pipeline.plan", "pipeline.providers"),
    ("pipeline.executors", "pipeline.settings"),
}


def test_stages_do_not_reach_into_later_stages() -> None:
    graph = _package_graph()
    found = {(package, other) for package, imported in graph.items() for other in imported
             if (package, other) in FORBIDDEN_PACKAGE_IMPORTS}
    assert not found, sorted(found)
