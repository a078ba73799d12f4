#!/usr/bin/env python3
"""Fails when the top-level modules of src/ import each other in a cycle.

A module is a file src/NAME.rs or a folder src/NAME/. It depends on every other top-level module
it names as `crate::OTHER` (in `use` statements, grouped `use crate::{...}` or inline paths) or,
from its own top file, as `super::OTHER`; comments do not count. The check prints each cycle (a strongly connected
component of more than one module) with the imports that close it, and exits 1 if there is any.
Run by `make test`; `python3 scripts/check-module-cycles.py` alone takes a moment.
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
ROOTS = {"lib.rs", "main.rs"}


def module_of(path: pathlib.Path) -> str | None:
    rel = path.relative_to(SRC)
    if len(rel.parts) == 1:
        return None if rel.name in ROOTS else rel.stem
    return None if rel.parts[0] == "bin" else rel.parts[0]


def names_in_group(text: str) -> list[str]:
    """Top-level names of a `{a::b, c, d::{e, f}}` group."""
    names, depth, current = [], 0, ""
    for ch in text:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        if depth == 1 and ch == ",":
            names.append(current)
            current = ""
        elif depth >= 1:
            current += ch
    names.append(current)
    return [re.split(r"::|\s", n.strip(), maxsplit=1)[0] for n in names if n.strip()]


def dependencies(path: pathlib.Path, own: str, modules: set[str]) -> dict[str, str]:
    """Other top-level modules this file names, each with one line that names it."""
    # Comments (doc links included) name modules without depending on them: blanked out,
    # keeping line numbers.
    text = re.sub(r"//[^\n]*", "", path.read_text())
    found: dict[str, str] = {}
    top_file = path.parent == SRC or path.name == "mod.rs" and path.parent.parent == SRC
    prefixes = ["crate"] + (["super"] if top_file else [])
    for prefix in prefixes:
        for m in re.finditer(rf"\b{prefix}::(\{{|\w+)", text):
            if m.group(1) == "{":
                names = names_in_group(text[m.end() - 1 :])
            else:
                names = [m.group(1)]
            line = text.count("\n", 0, m.start()) + 1
            for name in names:
                if name in modules and name != own:
                    found.setdefault(name, f"{path.relative_to(SRC.parent)}:{line}")
    return found


def main() -> int:
    files = [p for p in SRC.rglob("*.rs") if module_of(p)]
    modules = {module_of(p) for p in files}
    graph: dict[str, dict[str, str]] = {m: {} for m in modules}
    for p in files:
        own = module_of(p)
        for dep, where in dependencies(p, own, modules).items():
            graph[own].setdefault(dep, where)

    # Tarjan's strongly connected components.
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)

    if not components:
        print(f"no import cycle between the {len(modules)} top-level modules of src/")
        return 0
    for component in components:
        print("import cycle: " + " <-> ".join(component))
        members = set(component)
        for v in component:
            for w, where in sorted(graph[v].items()):
                if w in members:
                    print(f"  {v} -> {w}  ({where})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
