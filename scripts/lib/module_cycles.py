#!/usr/bin/env python3
"""Checks that no crate of the workspace has an import cycle between its modules.

Every `.rs` file under a crate's `src/` is a module. A reference to `crate::a::b::…`,
`super::…` or `self::…` in a file (in `use` lines or inline, outside comments and test
modules) is an edge from that file to the module it names (the deepest module file the path
reaches). The check fails when the graph of files has a cycle, or when the graph of top-level
modules (`crate::a`) has one. A module that names an item of its own parent is fine as long as
the parent does not name it back.

Usage: scripts/lib/module_cycles.py [crate directory …]   (default: every workspace member)
Exit status 0 when there is no cycle; 1 with the cycles printed otherwise.
"""

import os
import re
import sys

# The workspace to check: the current directory when it is one, else the script's own.
ROOT = (
    os.getcwd()
    if os.path.exists(os.path.join(os.getcwd(), "Cargo.toml"))
    else os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
CRATES = ["protocol", "services", "actors", "clients", "cli"]
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^}]*)\}", re.S)


def modules(src):
    """Module path (tuple of names) → file, for every file of the crate."""
    found = {}
    for directory, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            found[tuple(parts)] = path
    return found


def code_of(path):
    """The file's text without comments and without its test module."""
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def references(module, text, children=()):
    """Absolute module paths the text names, resolved from `module`. A path may also start with
    the name of one of the module's own children (`child::item`, no `self::`)."""
    paths = []
    for child in children:
        for _ in re.finditer(r"(?<![:\w])" + re.escape(child) + r"::", text):
            paths.append("self::" + child)
    for match in GROUP.finditer(text):
        base = match.group(1) + match.group(2)
        for item in re.split(r"[,\s]+", match.group(3)):
            item = item.strip().split(" as ")[0].strip()
            if item and item != "self":
                paths.append(base + "::" + item.split("::")[0])
            elif item == "self":
                paths.append(base)
    for match in PATH.finditer(text):
        paths.append(match.group(1) + match.group(2))
    resolved = []
    for path in paths:
        parts = path.split("::")
        head, rest = parts[0], parts[1:]
        if head == "crate":
            absolute = rest
        elif head == "self":
            absolute = list(module) + rest
        else:
            base = list(module)
            while rest and rest[0] == "super":
                rest = rest[1:]
                base = base[:-1]
            absolute = base[:-1] + rest
        resolved.append(tuple(absolute))
    return resolved


def cycles(graph):
    """Strongly connected components with more than one node."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in graph:
        if node not in index:
            visit(node)
    return result


def check(crate):
    src = os.path.join(ROOT, crate, "src")
    found = modules(src)
    files, tops = {}, {}
    for module, path in found.items():
        targets = set()
        children = [other[-1] for other in found if other[:-1] == module and other != module]
        for reference in references(module, code_of(path), children):
            # The deepest module file the path reaches.
            for length in range(len(reference), -1, -1):
                if reference[:length] in found:
                    target = reference[:length]
                    break
            else:
                continue
            if target != module and target != ():
                targets.add(target)
        files[module] = targets
        if module:
            tops.setdefault(module[0], set()).update(
                target[0] for target in targets if target and target[0] != module[0]
            )
    problems = []
    for component in cycles(files):
        problems.append("files: " + " ↔ ".join("::".join(m) or "lib" for m in component))
    for component in cycles(tops):
        problems.append("modules: " + " ↔ ".join(component))
    return problems


def main():
    crates = sys.argv[1:] or CRATES
    failed = False
    for crate in crates:
        for problem in check(crate):
            print(f"{crate}: import cycle between {problem}")
            failed = True
    if not failed:
        print(f"no import cycle between the modules of {', '.join(crates)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
