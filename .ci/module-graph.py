#!/usr/bin/env python3
"""Prints the kernel's module import graph; fails if its top-level modules form a cycle or if
the module map in `kernel/src/lib.rs` is not true (a module missing from it, or importing a module
listed on the same or a later line).

Reads `kernel/src`: a file's dependencies are the top-level modules it names as `crate::NAME`
(in `use` lines and paths) outside comments and `#[cfg(test)]` modules. Used by `.ci/run`.
"""
import os, re, sys

root = os.path.join(os.path.dirname(__file__), "..", "kernel", "src")
edges = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, root)
        top = rel.split(os.sep)[0].removesuffix(".rs")
        if top in ("lib", "main"):
            continue
        text = open(path, encoding="utf-8").read()
        cut = text.find("#[cfg(test)]")
        if cut >= 0:
            text = text[:cut]
        text = re.sub(r"//[^\n]*", "", text)
        for dep in re.findall(r"\bcrate::([a-z_]+)", text):
            if dep != top:
                edges.setdefault(top, set()).add(dep)
        edges.setdefault(top, set())

# Depth-first search for a cycle.
state, stack = {}, []
def visit(n):
    state[n] = 1
    stack.append(n)
    for m in sorted(edges.get(n, ())):
        if m not in edges:
            continue
        if state.get(m) == 1:
            cycle = stack[stack.index(m):] + [m]
            print("import cycle: " + " -> ".join(cycle), file=sys.stderr)
            sys.exit(1)
        if m not in state:
            visit(m)
    stack.pop()
    state[n] = 2

for n in sorted(edges):
    if n not in state:
        visit(n)

# Layers: a module's layer is one more than the highest layer it depends on.
layer = {}
def depth(n):
    if n not in layer:
        layer[n] = 1 + max((depth(m) for m in edges[n] if m in edges), default=-1)
    return layer[n]
for n in edges:
    depth(n)
for n in sorted(edges, key=lambda n: (layer[n], n)):
    deps = ", ".join(sorted(m for m in edges[n] if m in edges)) or "-"
    print(f"{layer[n]}  {n:12} <- {deps}")

# The map: numbered items of `kernel/src/lib.rs`'s doc, each naming modules in backticks.
lib = open(os.path.join(root, "lib.rs"), encoding="utf-8").read()
items, current = [], None
for line in lib.splitlines():
    if not line.startswith("//!"):
        continue
    text = line[3:].strip()
    m = re.match(r"(\d+)\.\s", text)
    if m:
        current = set()
        items.append(current)
    elif not text:
        current = None
    if current is not None:
        for name in re.findall(r"\[?`([a-z_]+)`\]?", text):
            if name in edges:
                current.add(name)
line_of = {}
for i, names in enumerate(items):
    for n in names:
        line_of.setdefault(n, i)
problems = [f"{n} is not in the module map of kernel/src/lib.rs" for n in sorted(edges) if n not in line_of]
for n in sorted(edges):
    for m in sorted(edges[n]):
        if m in line_of and n in line_of and line_of[m] >= line_of[n]:
            problems.append(f"{n} (map line {line_of[n] + 1}) imports {m} (map line {line_of[m] + 1})")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"module map: {len(items)} lines, every import runs to an earlier line")
