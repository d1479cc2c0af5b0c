"""Run a function right after a module is first imported, without importing it ourselves.

tfoy prepares TensorFlow (the hdfs:// filesystem) and Keras (the multi-worker fix in tfnode) for users' code, but
importing either costs seconds and memory in processes that never use them (the `tfoy` CLI, Spark drivers,
supervisors). So the preparation waits for the user's own `import tensorflow` / `import keras`, as wrapt's
`when_imported` does: a meta-path finder lets the normal finders locate the module, and wraps its loader so the
hook runs once the module's code has finished.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)


def when_imported(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Calls hook(module) now if `name` is imported already, else right after its first import. A hook that
    raises is logged, never raised into the user's import."""
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__spec__", None) is not None and not _initializing(module):
        _call(hook, module)
        return
    with _Finder.lock:
        finder = next((f for f in sys.meta_path if isinstance(f, _Finder)), None)
        if finder is None:
            finder = _Finder()
            sys.meta_path.insert(0, finder)
        finder.hooks.setdefault(name, []).append(hook)


def _initializing(module: ModuleType) -> bool:
    return bool(getattr(module.__spec__, "_initializing", False))


def _call(hook: Callable[[ModuleType], None], module: ModuleType) -> None:
    try:
        hook(module)
    except Exception:  # noqa: BLE001 - the user's import must still succeed
        log.exception("tfoy: preparing %s after its import failed", module.__name__)


class _Finder:
    lock = threading.Lock()

    def __init__(self) -> None:
        self.hooks: dict[str, list[Callable[[ModuleType], None]]] = {}
        self._finding: set[str] = set()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.hooks or name in self._finding:
            return None
        self._finding.add(name)  # the real finders must find the real spec
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding.discard(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        # the hooks leave the finder only when the module runs: a caller may look for a spec and not import it
        # (TensorFlow checks whether Keras is installed that way)
        spec.loader = _HookedLoader(spec.loader, lambda: self.hooks.pop(name, []))
        return spec


class _HookedLoader:
    """Delegates to the real loader; after exec_module runs the hooks."""

    def __init__(self, loader: Any, take_hooks: Callable[[], list[Callable[[ModuleType], None]]]):
        self._loader = loader
        self._take_hooks = take_hooks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        with _Finder.lock:
            hooks = self._take_hooks()
        for hook in hooks:
            _call(hook, module)
