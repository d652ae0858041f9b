"""Ctrl-C in the terminal of `make run` stops it cleanly: make exits 0, not 130, and reports no
interrupted target. Played in a real pseudo-terminal, with make and a program holding the terminal as
localenv.run does (the whole system is not needed to see what make prints)."""

from __future__ import annotations

import os
import pty
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import signal, sys, threading
sys.path.insert(0, {root!r})
from localenv.terminal import own_foreground_group
stopped = threading.Event()
def main():
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print("ready", flush=True)
    stopped.wait(30)
    print("stopped cleanly", flush=True)
if {hold}:
    with own_foreground_group():
        main()
else:
    main()
"""


def _make_run_and_press_ctrl_c(tmp_path: Path, hold: bool) -> tuple[int, str]:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM.format(root=str(ROOT), hold=hold))
    (tmp_path / "Makefile").write_text(f"run:\n\t{sys.executable} {program}\n")
    pid, terminal = pty.fork()
    if pid == 0:  # the child: a shell's job in the pseudo-terminal, as when a person types it
        # A shell starts a foreground job with Ctrl-C's default action, whatever the test run inherited
        # (a run started in the background, `make test &`, ignores SIGINT, and exec keeps that).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(tmp_path)
        os.execvp("make", ["make", "--no-print-directory", "run"])
    output = b""
    deadline = time.monotonic() + 30
    pressed = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the child's side closed: it ended
            break
        if not chunk:
            break
        output += chunk
        if not pressed and b"ready" in output:
            os.write(terminal, b"\x03")  # Ctrl-C, as typed
            pressed = True
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is what this is about")
def test_ctrl_c_stops_make_run_cleanly(tmp_path):
    code, output = _make_run_and_press_ctrl_c(tmp_path, hold=True)
    assert "stopped cleanly" in output
    assert "Interrupt" not in output and "Error" not in output, output
    assert code == 0, output


@pytest.mark.skipif(shutil.which("make") is None, reason="make is what this is about")
def test_without_a_terminal_of_its_own_make_dies_of_the_ctrl_c(tmp_path):
    """The reason for the above: make gets the same Ctrl-C, and however cleanly the program stops,
    make fails of it: usually it dies of the signal (a shell's status 130), and when the Ctrl-C
    lands while make is reaping its child, make's own wait() races and it exits 2 ("wait: No child
    processes"). Either way `make run && …` goes no further."""
    code, output = _make_run_and_press_ctrl_c(tmp_path, hold=False)
    assert "stopped cleanly" in output
    assert code in (-signal.SIGINT, 2), output  # killed by SIGINT, or make's error status
