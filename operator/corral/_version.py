"""corral's version: a leaf module that imports nothing.

Read by `corral.cli` (`--version`), the operator (`controller.naming`'s
version label, `controller.config`'s default worker image) and the worker (it
reports its version to the registry). It lives apart from `corral/__init__.py`
so that these imports add no edge to the handler API `corral` re-exports;
the import contracts in pyproject.toml rely on that.
"""

from __future__ import annotations

__version__ = "0.1.0"
