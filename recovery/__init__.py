"""recovery: snapshot-based recovery orchestrator for a compromised web fleet."""

__version__ = "0.1.0"
