"""The supervisor behind `make run` (localenv.supervisor), with real processes and signals: a
program whose main process is SIGKILLed is restarted, its leftover children killed, and the other
program keeps running; Ctrl-C (SIGINT) stops everything with status 0 and leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

from localenv.services import pid_alive
from localenv.supervisor import Backoff
from tests.processes import ROOT

PIDS = re.compile(r"^\S+ (?P<name>one|two)\s*\| pids (?P<main>\d+) (?P<child>\d+)$")


class Output:
    """The supervisor's output, read as it comes."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in iter(stream.readline, b""):
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def starts(self, name: str) -> list[tuple[int, int]]:
        """(main pid, child pid) of each start of a program, in order."""
        return [(int(m["main"]), int(m["child"])) for line in list(self.lines)
                if (m := PIDS.match(line)) and m["name"] == name]

    def wait_for(self, predicate, what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"{what} did not happen within {timeout}s:\n{self.text()}")


def wait_until_gone(pids: list[int], timeout: float = 5) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [pid for pid in pids if pid_alive(pid)]


def test_a_killed_program_is_restarted_alone_and_ctrl_c_stops_everything():
    supervisor = subprocess.Popen([sys.executable, "-m", "tests.support.supervised_pair"], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = Output(supervisor.stdout)
    seen: list[int] = []
    try:
        output.wait_for(lambda: output.starts("one") and output.starts("two"), "both programs starting")
        (one_main, one_child), = output.starts("one")
        two = output.starts("two")
        seen += [one_main, one_child, *two[0]]

        os.kill(one_main, signal.SIGKILL)
        output.wait_for(lambda: len(output.starts("one")) == 2, "the restart of `one`")
        seen += output.starts("one")[1]
        assert wait_until_gone([one_child]) == [], "the killed program's child was left behind"
        assert output.starts("two") == two and all(pid_alive(pid) for pid in two[0]), "`two` was disturbed"
        assert re.search(r"!! one exited with signal SIGKILL after [\d.]+s up; restarting it in 0.2s", output.text())

        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=15) == 0, output.text()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        for pid in seen:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert wait_until_gone(seen) == [], f"left behind: {output.text()}"


def test_the_restart_delay_doubles_up_to_its_maximum_and_starts_over_after_a_good_run():
    backoff = Backoff(first=1, maximum=30, reset_after=60)
    delays = [0.0]
    for _ in range(7):
        delays.append(backoff.after(delays[-1], uptime=2))
    assert delays[1:] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.after(30, uptime=61) == 1
