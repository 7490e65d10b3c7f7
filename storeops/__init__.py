"""storeops: standard operating procedures for store teams, with a tamper-evident ledger.

The public API is what `__all__` lists; `tests/core/test_api.py` fails if it drifts.
"""

from storeops.errors import (
    AlreadyCompletedError,
    ConfigError,
    DefinitionError,
    ExpressionError,
    InvalidInputError,
    NotAllowedError,
    OperationError,
    RunError,
    RunNotFoundError,
    StepNotActiveError,
    StoreopsError,
)
from storeops.machine import Event, Run
from storeops.spec import SopSpec

__all__ = [
    "AlreadyCompletedError",
    "ConfigError",
    "DefinitionError",
    "Event",
    "ExpressionError",
    "InvalidInputError",
    "NotAllowedError",
    "OperationError",
    "Run",
    "RunError",
    "RunNotFoundError",
    "SopSpec",
    "StepNotActiveError",
    "StoreopsError",
    "__version__",
]

__version__ = "0.1.0"
