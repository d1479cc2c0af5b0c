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
        src = _shipped(files, Path(entry_point).name) or (Path(entry_point) if Path(entry_point).exists() else None)
        if src is None:
            raise SpecError(f"entry_point: script {entry_point} not found (not in files, not on disk)")
        _parse(src)
        return
    if ":" not in entry_point:
        raise SpecError(f"entry_point: expected package.module:function or a .py script, got {entry_point!r}")
    module, func = entry_point.split(":", 1)
    src = _shipped(files, module.replace(".", "/") + ".py")
    if src is None:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError) as e:
            raise SpecError(f"entry_point: module {module!r} does not import: {e}") from None
        if found is None or not found.origin or not found.origin.endswith(".py"):
            raise SpecError(f"entry_point: module {module!r} does not import (not in files, not in {sys.prefix})")
        src = Path(found.origin)
    tree = _parse(src)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    defined |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    if func not in defined:
        raise SpecError(f"entry_point: {module} ({src}) defines no function {func!r}")


def _shipped(files: dict[str, str], relpath: str) -> Path | None:
    """The local source of `relpath` in the container's working folder: a shipped file, or one in a shipped folder."""
    for name, source in files.items():
        p = Path(source)
        if name == relpath and p.is_file():
            return p
        if p.is_dir() and relpath.startswith(name.rstrip("/") + "/"):
            cand = p / relpath[len(name.rstrip("/")) + 1 :]
            if cand.is_file():
                return cand
    return None


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as e:
        raise SpecError(f"entry_point: {path} does not import: SyntaxError line {e.lineno}: {e.msg}") from None
