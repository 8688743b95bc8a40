"""The memory limit: how the grader knows a kernel met it, and the one row it then gets.

Where the limit bites depends on the machine (`autograder.sandbox.launch` sets it up):

- **with cgroups** (v2, or v1's memory controller): the cap is on all the kernel's processes
  together (RAM disk included). At the cap the system's OOM killer ends a process, the
  launcher ends the rest, and its exit record counts the kill (`oom_kills`). The address-space
  limit is then `launch.AS_FACTOR` times the cap, so real memory decides, the same way every
  run (a notebook that maps that much without touching it meets the launcher's address-space
  watch below instead). (With equal limits they raced: one run raised MemoryError in the kernel, the next
  was killed, and the same notebook got "failed" one time and "the kernel died" the next.)
- **without cgroups**: only the address-space limit of each process (RLIMIT_AS = --memory).
  The thread that allocates past it gets MemoryError, or, inside a C library (libzmq, a C++
  extension), the process aborts, or ipykernel's own threads fail and the kernel hangs. Which
  thread allocates first is chance, so the launcher ends the kernel when a process of it comes
  within `launch.AS_RESERVE` of the limit and counts that as the cap's kill; an uncaught
  MemoryError before that, and a kernel that died saying it could not allocate (its fd 2 is the
  kernel log), are the same event.

Every path gets the same row: status ``failed``, not passed, no points, and `detail` (the
limit and the cell the kernel was running, when known). "The kernel died" stays for deaths
that are not the limit.
"""

from __future__ import annotations

import re

# an error output that is the limit: Python's MemoryError (numpy's _ArrayMemoryError too), torch's allocator
ERROR_NAMES = re.compile(r"MemoryError\b")
ERROR_VALUES = re.compile(r"can't allocate memory|cannot allocate memory|DefaultCPUAllocator", re.IGNORECASE)
# what a process that aborted at its address-space limit leaves in the kernel's own log (stdout/stderr)
ABORT_SIGNS = re.compile(r"std::bad_alloc|out of memory|Cannot allocate memory|MemoryError", re.IGNORECASE)


def error_cell(notebooks: list) -> int | None:
    """The number (1-based) of the first code cell whose uncaught error is the memory limit, or None."""
    for nb in notebooks:
        for number, cell in enumerate(nb.cells, start=1):
            if cell.get("cell_type") != "code":
                continue
            for output in cell.get("outputs", []):
                if output.get("output_type") != "error":
                    continue
                if ERROR_NAMES.search(str(output.get("ename", ""))) or ERROR_VALUES.search(str(output.get("evalue", ""))):
                    return number
    return None


def hit(*, oom_kills: int, kernel_died: bool, kernel_log: str, notebooks: list,
        running_cell: int | None) -> tuple[bool, int | None]:
    """(whether the kernel met its memory limit, the cell it was running then or None)."""
    cell = error_cell(notebooks)  # where the limit was first met, when a cell's error says so
    if oom_kills > 0:  # the kill may come a poll later, in the next cell
        return True, cell or running_cell
    if cell is not None:
        return True, cell
    if kernel_died and ABORT_SIGNS.search(kernel_log):
        return True, running_cell
    return False, None


def detail(memory_gb: float, cell: int | None) -> str:
    """The row's words, the same for every path (`hit`)."""
    where = f" in cell {cell}" if cell else ""
    return (f"the notebook used more than the {memory_gb:g} GB memory limit{where}; use less memory "
            "(smaller batches, fewer processes, free what you no longer need)")
