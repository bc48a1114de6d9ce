#!/usr/bin/env python3
"""The crate's module graph, from its `use` paths: fails on an import cycle.

Two graphs are checked, both without test code (`tests.rs` files and everything after a
`#[cfg(test)]` line):
- top-level modules (`scenario`, `fault`, `runner`, ...): an edge a -> b when a file of `a` names
  `crate::b`;
- files: an edge when a file names an item of another file's module, except a child naming its own
  ancestors (`super::` constants), which is how Rust modules share their parent's items.

Usage: .ci/module-graph.py [--dot]   (--dot prints the top-level graph for Graphviz)
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
ROOTS = {"lib.rs", "main.rs"}


def module_of(path: Path) -> tuple:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return ()
    return tuple(parts)


def strip_tests(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    cut = re.search(r"^\s*#\[cfg\(test\)\]", text, re.M)
    return text[: cut.start()] if cut else text


def expand(prefix: str, body: str) -> list:
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    body = body.strip()
    out = []
    m = re.match(r"^([\w:]*?)(::)?\{(.*)\}$", body, re.S)
    if m:
        head = m.group(1)
        inner = m.group(3)
        depth, start = 0, 0
        items = []
        for i, ch in enumerate(inner):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(inner[start:i])
                start = i + 1
        items.append(inner[start:])
        base = prefix + head + ("::" if head else "")
        for item in items:
            if item.strip():
                out.extend(expand(base, item))
        return out
    name = re.split(r"\s+as\s+", body)[0].strip()
    return [prefix + name]


def paths_in(text: str) -> list:
    found = []
    for m in re.finditer(r"\buse\s+([^;]+);", text, re.S):
        found.extend(expand("", " ".join(m.group(1).split())))
    found.extend(re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", text))
    return found


def resolve(path: str, here: tuple, modules: set):
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    elif parts[0] in ("super", "self"):
        base = list(here)
        rest = parts
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super" and base:
                base.pop()
            rest = rest[1:]
        base = tuple(base)
    else:
        return None
    target = base
    for p in rest:
        if target + (p,) in modules:
            target = target + (p,)
        else:
            break
    return target if target else None


def find_cycle(graph: dict):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def main() -> int:
    files = {}
    for path in sorted(SRC.rglob("*.rs")):
        if path.name == "tests.rs" or path.name in ROOTS and path.parent == SRC:
            continue
        files[module_of(path)] = strip_tests(path.read_text())
    modules = set(files)
    file_graph, top_graph = {}, {}
    for here, text in files.items():
        for p in paths_in(text):
            target = resolve(p, here, modules)
            if target is None or target == here:
                continue
            # A child naming its ancestors shares its parent's items: not a layering edge.
            if here[: len(target)] != target:
                file_graph.setdefault(here, set()).add(target)
            if target[0] != here[0]:
                top_graph.setdefault(here[0], set()).add(target[0])
    if "--dot" in sys.argv:
        print("digraph traceforge {")
        for a in sorted(top_graph):
            for b in sorted(top_graph[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    status = 0
    for name, graph in (("module", top_graph), ("file", file_graph)):
        cycle = find_cycle(graph)
        if cycle:
            print(f"import cycle between {name}s: " + " -> ".join("::".join(c) if isinstance(c, tuple) else c for c in cycle))
            status = 1
    if status == 0:
        print(f"no import cycle: {len(top_graph)} top-level modules, {len(files)} files")
    return status


if __name__ == "__main__":
    sys.exit(main())
