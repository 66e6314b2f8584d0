#!/usr/bin/env python3
"""Prints the kernel's module import graph and fails if its top-level modules form a cycle.

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
