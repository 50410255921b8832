#!/usr/bin/env python3
"""Fails when a source file includes a header of a layer above its own (docs/architecture.md "Layers").

The graph comes from the build (cmake/QragLayers.cmake writes qrag_layers.json: each library's owned folders
or files and the libraries it depends on). A file may include headers of its own library and of every library
its library depends on, directly or through others. Every .h/.cc/.cu/.cuh under an owned folder is checked;
project includes are the quoted ones starting with a top-level project folder ("server/", "kernels/", ...).

  check_layers.py --root SRC --layers BUILD/qrag_layers.json   exit 0 when clean, 1 listing every violation
"""
import argparse
import fnmatch
import json
import os
import re
import sys

SOURCE_SUFFIXES = (".h", ".cc", ".cu", ".cuh")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
PROJECT_DIRS = ("server/", "kernels/", "client/", "proto/")
# Headers generated from proto/ are included by their package path; they belong to qrag_proto.
GENERATED_PREFIXES = {"qrag/v1/": "qrag_proto", "grpc/health/v1/": "qrag_proto"}


def is_pattern(entry):
    """An OWNS entry naming files (a glob or a path with a suffix) rather than a folder."""
    return any(c in entry for c in "*?[") or entry.endswith(SOURCE_SUFFIXES)


class Layers:
    def __init__(self, graph):
        self.graph = graph
        self.closure = {name: self._reach(name) for name in graph}

    def _reach(self, name):
        seen, stack = set(), [name]
        while stack:
            for dep in self.graph.get(stack.pop(), {}).get("depends", []):
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return seen

    def owner(self, path):
        """The library owning project-relative `path`: a matching file entry wins, else the longest folder."""
        best, best_len = None, -1
        for name, spec in self.graph.items():
            for entry in spec.get("owns", []):
                if is_pattern(entry):
                    if fnmatch.fnmatchcase(path, entry):
                        return name
                elif path.startswith(entry.rstrip("/") + "/") and len(entry) > best_len:
                    best, best_len = name, len(entry)
        return best

    def allowed(self, lib, included_lib):
        return included_lib == lib or included_lib in self.closure.get(lib, set())


def violations(layers, files):
    """files: {relative path: text}. Yields (path, included, message) for every include breaking the layers."""
    for path, text in sorted(files.items()):
        lib = layers.owner(path)
        if lib is None:
            continue
        for included in INCLUDE_RE.findall(text):
            generated = next((lib for p, lib in GENERATED_PREFIXES.items() if included.startswith(p)), None)
            if generated is not None:
                target = generated
            elif included.startswith(PROJECT_DIRS):
                target = layers.owner(included)
            else:
                continue
            if target is None:
                yield path, included, f"{included} belongs to no declared layer"
            elif not layers.allowed(lib, target):
                yield path, included, (f"{lib} may not include {included} ({target}): {target} is not below "
                                       f"{lib}; depends on: {', '.join(sorted(layers.closure[lib])) or 'nothing'}")


def owned_files(root, layers):
    out = {}
    for spec in layers.graph.values():
        for entry in spec.get("owns", []):
            base = entry.rstrip("/")
            folder = os.path.dirname(base) if is_pattern(entry) else base
            for dirpath, _, names in os.walk(os.path.join(root, folder)):
                for n in names:
                    if n.endswith(SOURCE_SUFFIXES):
                        full = os.path.join(dirpath, n)
                        rel = os.path.relpath(full, root).replace(os.sep, "/")
                        if rel not in out:
                            with open(full, encoding="utf-8", errors="replace") as f:
                                out[rel] = f.read()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="project source folder")
    ap.add_argument("--layers", required=True, help="qrag_layers.json written by CMake")
    args = ap.parse_args()
    with open(args.layers, encoding="utf-8") as f:
        layers = Layers(json.load(f))
    files = owned_files(args.root, layers)
    bad = list(violations(layers, files))
    for path, _, msg in bad:
        print(f"{path}: layer violation: {msg}", file=sys.stderr)
    if bad:
        print(f"check_layers: {len(bad)} include(s) break the layers (docs/architecture.md \"Layers\")",
              file=sys.stderr)
        return 1
    print(f"check_layers: {len(files)} files in {len(layers.graph)} layers, every include points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
