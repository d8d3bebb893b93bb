"""Step kinds. Importing this package registers every implemented kind with the engine."""

from recovery.steps import (  # noqa: F401
    approval,
    boot,
    contain,
    diff,
    find_clean,
    golden,
    http_check,
    message,
    preserve,
    restore,
    run,
    sweep,
    traffic,
    verify,
)
