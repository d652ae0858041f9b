"""The supervisor behind `make run`: every program in its own process group with its output
prefixed, a program that exits restarted after a backoff, and all of them stopped on Ctrl-C or
SIGTERM.

honcho's manager, which `make run` used before, stops everything once one process exits: a Redis
hiccup that ended beat, or one worker killed, ended the whole run. Here the exit is logged loudly
and that program alone is restarted, after 1 s, then 2, 4, ... up to 30 s while it keeps failing,
and after 1 s again once it had stayed up a minute.

A program's process group goes with it: when its main process exits, whatever is left in the group
(a Celery worker's pool processes, a shell's children) is killed before the restart, and a stop
sends SIGTERM to every group, then SIGKILL to those still there after `stop_timeout` seconds (or at
a second Ctrl-C). Nothing the supervisor started outlives it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from honcho.colour import get_colours
from honcho.printer import Message, Printer

NAME = "supervisor"  # how its own lines are prefixed
RED = "31"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_SECONDS = 0.1  # how often exits are looked for


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `first`, doubling up to `maximum` while a program keeps exiting; `first` again
    once it had stayed up `reset_after` seconds."""

    first: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def after(self, previous: float, uptime: float) -> float:
        if not previous or uptime >= self.reset_after:
            return self.first
        return min(previous * 2, self.maximum)


@dataclass
class Program:
    name: str
    command: Sequence[str]
    env: dict[str, str] | None
    cwd: str | None
    colour: str
    on_start: Callable[[], None] | None
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float = 0.0  # when it is due to start again, while process is None
    delay: float = 0.0  # the last restart delay
    restarts: int = 0
    relay: threading.Thread | None = None


class Supervisor:
    def __init__(self, printer: Printer | None = None, backoff: Backoff = Backoff(),
                 stop_timeout: float = 10.0) -> None:
        self._printer = printer or Printer(sys.stdout)
        self._printer.width = len(NAME)
        self._print_lock = threading.Lock()
        self._colours = get_colours()
        self._backoff = backoff
        self._stop_timeout = stop_timeout
        self._programs: dict[str, Program] = {}
        self._stop_requested = threading.Event()
        self._stop_signal: int | None = None
        self._hurry = False  # a second stop signal: kill at once

    def add(self, name: str, command: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None,
            on_start: Callable[[], None] | None = None) -> None:
        """A program to run; `on_start` is called (in a thread of its own) after each start."""
        assert name not in self._programs, f"two programs named {name}"
        self._programs[name] = Program(name, list(command), env, cwd, next(self._colours), on_start)
        self._printer.width = max(self._printer.width, len(name))

    def run(self) -> int:
        """Run every program, restarting those that exit, until SIGINT, SIGTERM or SIGHUP; then stop
        them all and return 0."""
        previous = {sig: signal.signal(sig, self._request_stop) for sig in STOP_SIGNALS}
        try:
            for program in self._programs.values():
                self._start(program)
            while not self._stop_requested.is_set():
                for program in self._programs.values():
                    self._look_after(program)
                self._stop_requested.wait(POLL_SECONDS)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    # ------------------------------------------------------------------ one program

    def _start(self, program: Program) -> None:
        program.started_at = time.monotonic()
        try:
            process = subprocess.Popen(
                program.command, env=program.env, cwd=program.cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as error:  # a missing executable, a wrong directory: retried like an exit
            self._schedule_restart(program, f"could not start: {error}")
            return
        program.process = process
        program.relay = threading.Thread(target=self._relay, args=(program, process.stdout), daemon=True)
        program.relay.start()
        self._say(f"{program.name} {'restarted' if program.restarts else 'started'} (pid {process.pid})")
        if program.on_start:
            threading.Thread(target=program.on_start, name=f"{program.name}-on-start", daemon=True).start()

    def _look_after(self, program: Program) -> None:
        if program.process is None:
            if time.monotonic() >= program.restart_at:
                self._start(program)
            return
        status = _exit_status(program.process)
        if status is not None:
            program.process = None
            self._schedule_restart(program, f"exited with {_describe(status)}")

    def _schedule_restart(self, program: Program, what: str) -> None:
        uptime = time.monotonic() - program.started_at
        program.delay = self._backoff.after(program.delay, uptime)
        program.restart_at = time.monotonic() + program.delay
        program.restarts += 1
        self._say(f"!! {program.name} {what} after {uptime:.1f}s up; restarting it in {program.delay:g}s "
                  f"(restart {program.restarts})", loud=True)

    # ------------------------------------------------------------------ stopping

    def _request_stop(self, signum: int, _frame) -> None:
        # Only flags here: the main loop, which this interrupts, may be printing.
        if self._stop_requested.is_set():
            self._hurry = True
        self._stop_signal = self._stop_signal or signum
        self._stop_requested.set()

    def _stop_all(self) -> None:
        running = [(program, program.process) for program in self._programs.values() if program.process is not None]
        reason = signal.Signals(self._stop_signal).name if self._stop_signal else "an error"
        self._say(f"stopping {len(running)} programs ({reason})")
        for _program, process in running:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout
        while running and not self._hurry and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS / 2)
            running = [(program, process) for program, process in running if not _group_gone(process)]
        for program, process in running:
            self._say(f"!! {program.name} did not stop in time: killing it", loud=True)
            _signal_group(process, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while running and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS / 2)
            running = [(program, process) for program, process in running if not _group_gone(process)]
        for program in self._programs.values():
            if program.relay is not None:
                program.relay.join(timeout=1)  # its last lines
        self._say("stopped" if not running else f"!! still running: {', '.join(p.name for p, _process in running)}",
                  loud=bool(running))

    # ------------------------------------------------------------------ output

    def _relay(self, program: Program, stream: IO[bytes]) -> None:
        with stream:
            for line in iter(stream.readline, b""):
                self._print(program.name, program.colour, line)

    def _say(self, text: str, loud: bool = False) -> None:
        self._print(NAME, RED if loud else None, text)

    def _print(self, name: str, colour: str | None, data: bytes | str) -> None:
        message = Message(type="line", data=data, time=datetime.datetime.now().astimezone(), name=name, colour=colour)
        with self._print_lock:
            self._printer.write(message)


def _exit_status(process: subprocess.Popen) -> int | None:
    """The main process's exit status once it ended (None while it runs), after what is left of its
    process group is killed: the main process is reaped only then, so until that moment it holds
    its pid, and the group id cannot name anyone else's processes."""
    with contextlib.suppress(ChildProcessError):  # already reaped
        if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return None
    _signal_group(process, signal.SIGKILL)
    return process.wait()


def _group_gone(process: subprocess.Popen) -> bool:
    """Whether the main process has exited and nothing is left in its process group."""
    if process.poll() is None:
        return False
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _describe(status: int) -> str:
    if status < 0:
        return f"signal {signal.Signals(-status).name}"
    return f"status {status}"
