"""Step kinds. Importing this package registers every implemented kind with the engine."""

from recovery.steps import approval, http_check, message, run, traffic  # noqa: F401
