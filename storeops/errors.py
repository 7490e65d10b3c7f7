"""Exceptions storeops raises, for people: each says what was found and what to do.

Pure core: standard library only.

    StoreopsError
    ├── DefinitionError        an SOP or roster file has problems (carries diagnostics)
    ├── ExpressionError        an expression failed while a run evaluated it
    ├── ConfigError            a setting, path or CLI argument is unusable
    └── RunError               a run refused an operation (names SOP, version, run, state)
        ├── RunNotFoundError
        ├── StepNotActiveError
        ├── AlreadyCompletedError
        ├── NotAllowedError    the person lacks the role, or four-eyes forbids it
        └── InvalidInputError  form fields, checklist or evidence do not satisfy the step
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class StoreopsError(Exception):
    """Base of every error storeops raises on purpose."""


class DefinitionError(StoreopsError):
    def __init__(self, diagnostics: Sequence[Any]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class ExpressionError(StoreopsError):
    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(f"expression {source!r}: {message}")


class ConfigError(StoreopsError):
    pass


class RunError(StoreopsError):
    pass


class RunNotFoundError(RunError):
    pass


class StepNotActiveError(RunError):
    pass


class AlreadyCompletedError(RunError):
    pass


class NotAllowedError(RunError):
    pass


class InvalidInputError(RunError):
    pass


class OperationError(StoreopsError):
    """A connector operation failed. `error` is one of spec.ERROR_CLASSES.

    Whether a retry is allowed is a property of the error, not of the caller.
    """

    def __init__(
        self,
        error: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)
