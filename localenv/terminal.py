"""Ctrl-C for `make run`: a clean stop, with status 0.

The terminal sends Ctrl-C's SIGINT to its whole foreground process group: to make as well as to
us. However cleanly we stop, make then dies of that signal (status 130, so `make run && …` and
`set -e` scripts take it for a failure). So `make run` moves
itself into a process group of its own and makes that the terminal's foreground group: Ctrl-C
reaches only us, the supervisor stops everything and exits 0, and make sees a target that ended
well. The terminal is handed back on the way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def own_foreground_group() -> Iterator[None]:
    """Take the terminal's foreground for a process group of our own while the block runs. Does
    nothing without a terminal (CI, a pipe), or when we were started in the background (`make run &`):
    taking the foreground from the shell then would be rude."""
    try:
        terminal = sys.stdin.fileno()
        foreground = os.tcgetpgrp(terminal)
    except (OSError, ValueError):  # no terminal (a pipe, /dev/null) or stdin closed
        yield
        return
    if foreground != os.getpgrp():
        yield
        return
    os.setpgid(0, 0)
    # A process group that is not in the foreground is stopped (SIGTTOU) when it sets the
    # terminal's foreground group, unless it ignores the signal meanwhile.
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(terminal, os.getpgrp())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(terminal, foreground)
        signal.signal(signal.SIGTTOU, previous)
