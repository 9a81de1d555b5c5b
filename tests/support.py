"""Helpers shared by the test packages (the runtime ones live in finsentry.runtime)."""

from pathlib import Path

from finsentry.runtime import free_port, wait_until

__all__ = ["free_port", "process_alive", "wait_until"]


def process_alive(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped (read from /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
