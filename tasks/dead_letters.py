"""Dead letters from the command line: list them, show one, replay one or every one of a task.

    python -m tasks.dead_letters list [--task NAME] [--page N]
    python -m tasks.dead_letters show ID
    python -m tasks.dead_letters replay ID
    python -m tasks.dead_letters replay-all TASK_NAME

Replays are handed to the queues after their transaction commits, once per dead letter however
often they are asked for, and each is an audit entry (`--actor`, default `cli:<login>`). The same
from Celery: `maintenance.replay_dead_letter(id)`, `maintenance.replay_dead_letters(task_name)`;
and from the chat: /admin → ☠️ Dead letters.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime

from chat.messages import dead_letters as words
from core.db import session_scope
from core.i18n import SUPPORTED_LANGUAGES, Translator
from domain import dead_letters
from domain.dead_letters import ReplayOutcome, ReplayResult

PAGE_SIZE = 50
MAX_REPLAYED_AT_ONCE = 10_000


def replay_every(task_name: str, actor: str) -> list[ReplayResult]:
    """Replay the dead letters of one task not replayed yet, a batch per transaction, until none is
    left (or only ones that cannot be replayed)."""
    results: list[ReplayResult] = []
    while len(results) < MAX_REPLAYED_AT_ONCE:
        with session_scope() as session:
            batch = dead_letters.replay_all(session, task_name, actor, datetime.now(UTC))
        results += batch
        if len(batch) < dead_letters.REPLAY_ALL_BATCH or all(r.outcome is not ReplayOutcome.REPLAYED for r in batch):
            break
    return results


def _list(_: Translator, task_name: str | None, page_number: int) -> int:
    with session_scope() as session:
        page = dead_letters.page(session, offset=page_number * PAGE_SIZE, limit=PAGE_SIZE, task_name=task_name)
        waiting = dead_letters.count_waiting(session)
    if not page.letters:
        print(_("No dead letters."))
        return 0
    for letter in page.letters:
        print(f"{letter.id:>7}  {words.when(letter.created_at)}  {letter.task_name:<36} "
              f"{letter.reference or '—':<28} {words.status(_, letter)}")
    print(_("Waiting: {waiting} · all: {total}", waiting=waiting, total=page.total))
    if page.has_more:
        print(_("More with --page {page}.", page=page_number + 1))
    return 0


def _show(_: Translator, dead_letter_id: int) -> int:
    with session_scope() as session:
        letter = dead_letters.get(session, dead_letter_id)
    if letter is None:
        print(_("There is no dead letter #{id}.", id=dead_letter_id), file=sys.stderr)
        return 1
    print(words.plain(_, letter))
    return 0


def _replay(_: Translator, dead_letter_id: int, actor: str) -> int:
    with session_scope() as session:
        result = dead_letters.replay(session, dead_letter_id, actor, datetime.now(UTC))
    done = result.outcome in (ReplayOutcome.REPLAYED, ReplayOutcome.ALREADY_REPLAYED)
    print(words.outcome(_, result), file=sys.stdout if done else sys.stderr)
    return 0 if done else 1


def _replay_all(_: Translator, task_name: str, actor: str) -> int:
    results = replay_every(task_name, actor)
    for result in results:
        if result.outcome is not ReplayOutcome.REPLAYED:
            print(words.outcome(_, result), file=sys.stderr)
    print(words.summary(_, task_name, results))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.dead_letters", description=__doc__.splitlines()[0])
    parser.add_argument("--language", choices=SUPPORTED_LANGUAGES, default="en", help="of the output (default: en)")
    parser.add_argument("--actor", default=f"cli:{getpass.getuser()}", help="who replays, for the audit log")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the dead letters, newest first")
    listing.add_argument("--task", help="only those of this task name")
    listing.add_argument("--page", type=int, default=0, help=f"{PAGE_SIZE} per page, from 0")
    commands.add_parser("show", help="one dead letter with its whole error").add_argument("id", type=int)
    commands.add_parser("replay", help="queue a dead letter's task again, once").add_argument("id", type=int)
    commands.add_parser("replay-all", help="replay every dead letter of one task").add_argument("task_name")
    args = parser.parse_args(argv)
    _ = Translator(args.language)
    if args.command == "list":
        return _list(_, args.task, max(args.page, 0))
    if args.command == "show":
        return _show(_, args.id)
    if args.command == "replay":
        return _replay(_, args.id, args.actor)
    return _replay_all(_, args.task_name, args.actor)


if __name__ == "__main__":
    sys.exit(main())
