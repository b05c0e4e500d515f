"""One module per command; importing them registers them on the app."""

from . import cp, ls, migrate, rm, stats, sync, verify

__all__ = ["cp", "ls", "migrate", "rm", "stats", "sync", "verify"]
