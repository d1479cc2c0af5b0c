"""The base of tfnode's own errors (barrier, wire, Keras across workers); each also keeps the built-in type
callers already catch (TimeoutError, ConnectionError, RuntimeError)."""

from __future__ import annotations


class TfnodeError(Exception):
    """Base of tfnode's own errors."""
