"""A handler's payload model named by its module and class, imported by the
first payload it validates (`LazyPayload`), and the test for pydantic's
ValidationError that does not import pydantic.

The built-in kinds (`corral.worker.executors`) register their payload models
this way, so that neither the models nor pydantic load on a worker's way to
its first claim (`make bench-start`, tests/unit/test_worker_start_imports.py).
`corral.worker.handlers.Handler` takes a LazyPayload where it takes a model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

__all__ = ["LazyPayload", "is_validation_error"]


class LazyPayload:
    """A payload model named by its module and class, imported by the first
    payload it validates: the built-in kinds' (`corral.worker.executors`), so
    that neither their models nor pydantic load on a worker's way to its
    first claim. Stands in for the model where `Handler` uses it."""

    __slots__ = ("__name__", "_model", "module")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.__name__ = name
        self._model: type[BaseModel] | None = None

    @property
    def model(self) -> type[BaseModel]:
        if self._model is None:
            self._model = getattr(importlib.import_module(self.module), self.__name__)
        return self._model

    def model_validate(self, data: Any) -> BaseModel:
        return self.model.model_validate(data)

    def __repr__(self) -> str:
        return f"<payload model {self.module}.{self.__name__}, imported on first use>"


def is_validation_error(exc: BaseException) -> TypeGuard[ValidationError]:
    from pydantic import ValidationError  # loaded already: the model is pydantic's

    return isinstance(exc, ValidationError)
