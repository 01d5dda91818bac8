"""Check the package structure: layers point one way, no import cycle between modules, no module too long.

usage: python tools/check_structure.py [--max-lines 500]    (exit 1 and one line per problem when any)

Layers, bottom up: uae_data.core ← uae_data ← uae_eval ← uae_train ← cli. A module may import its own layer
and the layers below it, never above. Every import counts, at module level or inside a function (a lazy
import still ties the modules together). A cycle is a strongly connected set of two or more modules in
that graph (Tarjan); `from pkg import name` is an edge to pkg.name when that is a module, else to pkg.
Written by hand because it is ~100 lines of `ast`; import-linter would add a dependency and a config file
for the same two rules.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("uae_data", "uae_eval", "uae_train")
LAYERS = ("uae_data.core", "uae_data", "uae_eval", "uae_train", "cli")  # bottom first


def modules(root: Path = ROOT) -> dict[str, Path]:
    """{dotted module name: file} of the packages and cli.py."""
    found = {"cli": root / "cli.py"}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `name` imports anywhere in its file."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import a.b.c` of a non-module attribute: its module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def layer(name: str) -> int:
    for i, prefix in reversed(list(enumerate(LAYERS))):
        if name == prefix or name.startswith(prefix + "."):
            return i
    raise ValueError(name)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    scc.append(m)
                    if m == node:
                        break
                if len(scc) > 1:
                    found.append(sorted(scc))
    return found


def problems(root: Path = ROOT, max_lines: int = 500) -> list[str]:
    mods = modules(root)
    graph = {name: imports(name, path, set(mods)) for name, path in mods.items()}
    out = []
    for name in sorted(graph):
        for target in sorted(graph[name]):
            if layer(target) > layer(name):
                out.append(f"layer: {name} imports {target} (a higher layer)")
    for scc in cycles(graph):
        out.append(f"cycle: {' <-> '.join(scc)}")
    for name, path in sorted(mods.items()):
        n = len(path.read_text().splitlines())
        if n > max_lines:
            out.append(f"size: {path.relative_to(root)} has {n} lines (> {max_lines})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-lines", type=int, default=500)
    found = problems(max_lines=parser.parse_args().max_lines)
    for line in found:
        print(line)
    print(f"{len(found)} problem(s)" if found else "structure ok: layers one way, no cycles, no module too long")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
