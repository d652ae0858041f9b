"""Run by tests/integration/test_supervisor.py: the supervisor `make run` uses, with two small
programs. Each starts a child process of its own (its process group must go with it) and prints
both process ids, so the test can find and kill them."""

from __future__ import annotations

import sys

from localenv.supervisor import Backoff, Supervisor

PROGRAM = (
    "import os, subprocess, time\n"
    "child = subprocess.Popen(['sleep', '600'])\n"
    "print(f'pids {os.getpid()} {child.pid}', flush=True)\n"
    "time.sleep(600)\n"
)


def main() -> int:
    supervisor = Supervisor(backoff=Backoff(first=0.2, maximum=1.0), stop_timeout=5.0)
    for name in ("one", "two"):
        supervisor.add(name, [sys.executable, "-c", PROGRAM])
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
