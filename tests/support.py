"""Helpers shared by the test packages (the runtime ones live in finsentry.runtime)."""

from finsentry.runtime import free_port, wait_until

__all__ = ["free_port", "wait_until"]
