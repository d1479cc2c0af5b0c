"""Does the job's entry point exist and compile? Checked on the edge node before anything is submitted.

Apart from the spec (`yarn_app.spec` checks a spec's shape, offline) because this reads user code: it is found
among the shipped files, then on this Python's path, and parsed, never imported, since importing user code
usually imports TensorFlow (seconds) and may run anything.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

from yarn_app.spec import SpecError

__all__ = ["check_entry_point"]


def check_entry_point(entry_point: str, files: dict[str, str]) -> None:
    """The entry point exists, compiles and (for a `module:function`) defines the function.

    Parameters
    ----------
    entry_point : str
        The spec's `entry_point`: `package.module:function`, or a `script.py`.
    files : dict[str, str]
        The spec's `files` (name in the container → local source, a file or a folder), searched first.

    Raises
    ------
    SpecError
        Naming `entry_point`: not found, a SyntaxError (with its line), or no such function.
    """
    if entry_point.endswith(".py"):
        path = Path(entry_point)  # a relative one is the spec folder's (JobSpec.resolve_files), never this shell's
        src = _shipped(files, path.name) or (path if path.is_absolute() and path.exists() else None)
        if src is None:
            where = "does not exist" if path.is_absolute() else "not found (not in files, not beside the job spec)"
            raise SpecError(f"entry_point: script {entry_point} {where}")
        _parse(src)
        return
    if ":" not in entry_point:
        raise SpecError(f"entry_point: expected package.module:function or a .py script, got {entry_point!r}")
    module, func = entry_point.split(":", 1)
    relpath = module.replace(".", "/")
    src = _shipped(files, relpath + ".py") or _shipped(files, relpath + "/__init__.py")  # a module or a package
    if src is None:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError) as e:
            raise SpecError(f"entry_point: module {module!r} does not import: {e}") from None
        if found is None or not found.origin or not found.origin.endswith(".py"):
            raise SpecError(f"entry_point: module {module!r} does not import (not in files, not in {sys.prefix})")
        src = Path(found.origin)
    defined = _module_names(_parse(src).body)
    if defined is not None and func not in defined:
        raise SpecError(f"entry_point: {module} ({src}) defines no function {func!r}")


def _module_names(body: list[ast.stmt]) -> set[str] | None:
    """The names a module binds when it runs: also inside top-level `if`/`try`/`with` blocks (an optional import,
    a fallback), not inside functions. None after `from x import *`: the names cannot be known without importing."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(a.name == "*" for a in node.names):
                return None
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
        else:
            nested = [getattr(node, k, []) for k in ("body", "orelse", "finalbody")]
            nested += [h.body for h in getattr(node, "handlers", [])]
            for block in nested:
                inner = _module_names(block) if isinstance(block, list) else set()
                if inner is None:
                    return None
                names |= inner
    return names


def _shipped(files: dict[str, str], relpath: str) -> Path | None:
    """The local source of `relpath` in the container's working folder: a shipped file, or one in a shipped folder."""
    for name, source in files.items():
        p = Path(source)
        if name == relpath and p.is_file():
            return p
        if p.is_dir() and relpath.startswith(name + "/"):
            cand = p / relpath[len(name) + 1 :]
            if cand.is_file():
                return cand
    return None


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as e:
        raise SpecError(f"entry_point: {path} does not import: SyntaxError line {e.lineno}: {e.msg}") from None
