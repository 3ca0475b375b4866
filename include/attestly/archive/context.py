"""The archive's view of the shared run context (:class:`attestly.runcontext.RunContext`, also used by
key disposal and the holds), plus memory release between batches."""

from __future__ import annotations

from attestly.runcontext import DEFAULT_ROW_GROUP_ROWS, RunContext, connect_audit

#: The archive's name for the shared run context (kept for existing imports).
ArchiveContext = RunContext

__all__ = ["DEFAULT_ROW_GROUP_ROWS", "ArchiveContext", "RunContext", "connect_audit", "release_memory"]


def release_memory() -> None:
    """Give memory freed by the last batch back to the operating system (Arrow's pool, and glibc's heap
    where available), so the process's footprint is one batch's working set, not the sum of its
    history. Best effort: does nothing where neither applies."""
    import ctypes
    import ctypes.util

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            trim = ctypes.CDLL(libc_name).malloc_trim
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
            return
        trim(0)
