"""`make run`: the whole system on this machine, under one supervisor (localenv.supervisor).

Starts private Redis and Postgres unless REDIS_URL / DATABASE_URL point elsewhere, migrates the
schema, and runs the gateway (or the poller), a worker per queue, beat, Flower and the Mini App,
with prefixed logs; one that exits is restarted on its own. Without BOT_TOKEN everything talks to the
local Telegram fake. Ctrl-C stops all.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bot import setup
from core.settings import load_settings
from localenv.services import PostgresServer, RedisServer, port_open
from localenv.supervisor import Supervisor
from localenv.terminal import own_foreground_group

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
METRICS_DIR = RUN_DIR / "metrics"
PYTHON = sys.executable
SANDBOX_TELEGRAM_PORT = 8081
SANDBOX_STRIPE_PORT = 12111
FLOWER_PORT = 5555
SANDBOX_ADMIN_ID = 4242  # the web chat's admin persona

# Workers per queue: (concurrency, prefetch). Updates are short, so that worker prefetches more.
WORKERS = {
    "updates": (2, 4),
    "reservations": (2, 1),
    "payments": (1, 1),
    "images": (1, 1),
    "notifications": (1, 1),
    "maintenance": (1, 1),
}


# Flower keeps the latest tasks it shows (and four times as many of their events) in memory: the soak
# saw it grow for as long as that history was filling, 5 MB a minute. 3,000 tasks are the last few
# minutes of a busy system, which is what an operator looks at live; metrics and logs keep the rest.
FLOWER_MAX_TASKS = 3000


def _persistent_secret(name: str, make) -> str:
    """A generated secret kept in .run/, so it stays the same from one run to the next."""
    path = RUN_DIR / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def prepare_environment() -> tuple[dict[str, str], list[RedisServer | PostgresServer]]:
    """Start what is missing and return the environment every process gets, plus what to stop."""
    RUN_DIR.mkdir(exist_ok=True)
    env = dict(os.environ)
    started: list[RedisServer | PostgresServer] = []
    if not env.get("REDIS_URL"):
        redis = RedisServer(RUN_DIR / "redis", 16379).start()
        started.append(redis)
        env["REDIS_URL"] = redis.url
    if not env.get("DATABASE_URL"):
        postgres = PostgresServer(RUN_DIR / "postgres", 15432).start()
        started.append(postgres)
        env["DATABASE_URL"] = postgres.url
    sandbox = not env.get("BOT_TOKEN")
    if sandbox:
        env["TELEGRAM_API_URL"] = f"http://127.0.0.1:{SANDBOX_TELEGRAM_PORT}"
        env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{env.get('GATEWAY_PORT', '8080')}")
        if not env.get("CHECKOUT_RETURN_URL"):
            # Back to the web chat after the checkout page, as a real customer goes back to the
            # bot's chat (the Stripe fake redirects to a success_url on this machine that answers).
            env["CHECKOUT_RETURN_URL"] = f"http://127.0.0.1:{SANDBOX_TELEGRAM_PORT}/"
    if sandbox and not env.get("STRIPE_SECRET_KEY"):
        # Card payments against the local Stripe fake; its webhooks go to the gateway.
        env["STRIPE_API_URL"] = f"http://127.0.0.1:{SANDBOX_STRIPE_PORT}"
        env["STRIPE_SECRET_KEY"] = "sk_test_sandbox"
        env["STRIPE_WEBHOOK_SECRET"] = _persistent_secret("stripe-webhook-secret",
                                                          lambda: "whsec_" + secrets.token_hex(16))
        env["SANDBOX_STRIPE"] = "1"
    if not env.get("TELEGRAM_WEBHOOK_SECRET"):
        env["TELEGRAM_WEBHOOK_SECRET"] = _persistent_secret("webhook-secret", lambda: secrets.token_urlsafe(32))
    if not env.get("FLOWER_BASIC_AUTH"):
        if not sandbox:
            raise SystemExit("FLOWER_BASIC_AUTH is unset: Flower would be open to anyone (set user:password).")
        env["FLOWER_BASIC_AUTH"] = "admin:" + _persistent_secret("flower-password", lambda: secrets.token_urlsafe(12))
    if sandbox:
        # The web chat's admin persona (Ada) is an admin unless ADMIN_IDS names others.
        if not env.get("ADMIN_IDS"):
            env["ADMIN_IDS"] = str(SANDBOX_ADMIN_ID)
        first_admin = env["ADMIN_IDS"].replace(";", ",").split(",")[0].strip()
        env["TELEGRAM_FAKE_WEB_ADMIN_ID"] = first_admin if first_admin.isdigit() else str(SANDBOX_ADMIN_ID)
        # The web chat links to Flower and shows the chat's tasks (fetched by the fake, credentials stay there).
        env["TELEGRAM_FAKE_FLOWER_URL"] = f"http://127.0.0.1:{FLOWER_PORT}"
        # The chat page's 🛠 panel finds each update's task in Flower: the sandbox keeps its events.
        env.setdefault("UPDATE_TASK_EVENTS", "true")
        env["TELEGRAM_FAKE_FLOWER_AUTH"] = env["FLOWER_BASIC_AUTH"]
    env.setdefault("LOG_JSON", "false")  # readable lines in a terminal; JSON in production
    env["PYTHONUNBUFFERED"] = "1"
    return env, started


def migrate(env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True)


def _process_env(name: str, env: dict[str, str]) -> dict[str, str]:
    """Workers write their metrics to files that tasks.metrics_exporter sums; only they (and the
    exporter) get that directory, so the gateway's and Flower's own metrics stay their own."""
    if name.startswith("worker-") or name == "metrics":
        return {**env, "PROMETHEUS_MULTIPROC_DIR": str(METRICS_DIR)}
    return env


def processes(env: dict[str, str]) -> dict[str, list[str]]:
    celery = [PYTHON, "-m", "celery", "-A", "tasks"]
    # Celery warns once per worker when run as root (make run in a root container). The warning is
    # about pickle, and these workers accept JSON only (celeryconfig.accept_content), so it is
    # silenced by its text: -W is read before Celery's warning class could be imported.
    celery_worker = [PYTHON, "-W", "ignore:You're running the worker with superuser privileges",
                     "-m", "celery", "-A", "tasks"]
    procs: dict[str, list[str]] = {}
    if not env.get("BOT_TOKEN"):
        procs["telegram"] = [PYTHON, "-m", "sandbox.telegram_fake", "--host", "127.0.0.1",
                             "--port", str(SANDBOX_TELEGRAM_PORT)]
    if env.get("SANDBOX_STRIPE"):
        procs["stripe"] = [
            PYTHON, "-m", "sandbox.stripe_fake", "--host", "127.0.0.1", "--port", str(SANDBOX_STRIPE_PORT),
            "--webhook-url", f"{env['PUBLIC_URL']}/stripe/webhook", "--webhook-secret", env["STRIPE_WEBHOOK_SECRET"],
            "--log-level", "warning",
        ]
    if env.get("PUBLIC_URL"):
        procs["gateway"] = [PYTHON, "-m", "bot.gateway"]
    else:
        procs["poller"] = [PYTHON, "-m", "bot.poller"]
    for queue, (concurrency, prefetch) in WORKERS.items():
        procs[f"worker-{queue}"] = [
            *celery_worker, "worker", "-Q", queue, "-n", f"{queue}@%h", "-c", str(concurrency),
            "--prefetch-multiplier", str(prefetch), "--loglevel", "INFO",
        ]
    procs["webapp"] = [PYTHON, "-m", "webapp"]
    procs["metrics"] = [PYTHON, "-m", "tasks.metrics_exporter"]
    procs["beat"] = [*celery, "beat", "--loglevel", "INFO"]
    procs["flower"] = [*celery, "flower", "--address=127.0.0.1", f"--port={FLOWER_PORT}",
                       f"--max_tasks={FLOWER_MAX_TASKS}"]
    return procs


def tell_telegram_where_we_are(env: dict[str, str]) -> None:
    """Set the webhook (or remove it for polling) once the Bot API answers. Called again whenever
    the sandbox's Telegram fake restarts: it keeps its state in memory."""
    api_url = env.get("TELEGRAM_API_URL", "https://api.telegram.org")
    if api_url.startswith("http://127.0.0.1"):
        port = int(api_url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 60
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
    os.environ.update(env)
    try:
        asyncio.run(setup._main("webhook" if env.get("PUBLIC_URL") else "polling"))
    except Exception as error:  # noqa: BLE001 - shown to the person running make run
        print(f"!! could not configure the bot with Telegram: {error}", file=sys.stderr)


def banner(env: dict[str, str]) -> str:
    """What `make run` prints: first the one address a newcomer needs (the web chat, in the
    sandbox), then everything else under "For operators"."""
    host, port = env.get("GATEWAY_HOST", "127.0.0.1"), env.get("GATEWAY_PORT", "8080")
    user, password = env["FLOWER_BASIC_AUTH"].split(":", 1)
    telegram = f"http://127.0.0.1:{SANDBOX_TELEGRAM_PORT}"
    sandbox = not env.get("BOT_TOKEN")
    if sandbox:
        lines = [
            "",
            "Surplus is starting in the sandbox (no BOT_TOKEN: local fakes). Open the web chat:",
            "",
            f"    >>> {telegram}/ <<<",
            "",
            "  a Telegram-like chat with the bot: play customers, a business owner and an admin; ▶ Play the demo",
        ]
    else:
        lines = ["", "Surplus is starting with your bot (BOT_TOKEN): write to it in Telegram."]
    lines += [
        "",
        "  Ctrl-C stops everything (a process that exits is restarted by itself).",
        "",
        "For operators:",
    ]
    if sandbox:
        lines.append(f"  Telegram fake    : {telegram}/_sandbox/  (users from curl: sandbox/telegram_fake/README.md)")
    if env.get("SANDBOX_STRIPE"):
        lines.append(f"  Stripe fake      : http://127.0.0.1:{SANDBOX_STRIPE_PORT}  (no STRIPE_SECRET_KEY; "
                     "its checkout page has Pay and Decline)")
    lines += [
        f"  Gateway          : http://{host}:{port}/healthz  /readyz  /metrics",
        (f"  Mini App         : http://{env.get('WEBAPP_HOST', '127.0.0.1')}:{env.get('WEBAPP_PORT', '8082')}/  "
         "(its API: /api/openapi.json; opened with initData by the bot's 🗺 Map button)"),
        (f"  Worker metrics   : http://{env.get('WORKER_METRICS_HOST', '127.0.0.1')}:"
         f"{env.get('WORKER_METRICS_PORT', '9808')}/metrics  (every worker process, summed)"),
        f"  Flower           : http://127.0.0.1:{FLOWER_PORT}  (user {user}, password {password})",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    with own_foreground_group():
        _run()


def _run() -> None:
    os.chdir(ROOT)
    env, started = prepare_environment()
    os.environ.update(env)
    load_settings()  # exits with a message naming the bad variable
    try:
        migrate(env)
        shutil.rmtree(METRICS_DIR, ignore_errors=True)  # last run's counts must not linger
        METRICS_DIR.mkdir()
        supervisor = Supervisor()
        procs = processes(env)
        for name, command in procs.items():
            on_start = (lambda: tell_telegram_where_we_are(env)) if name == "telegram" else None
            supervisor.add(name, command, env=_process_env(name, env), cwd=str(ROOT), on_start=on_start)
        if "telegram" not in procs:  # the real Bot API
            threading.Thread(target=tell_telegram_where_we_are, args=(env,), daemon=True).start()
        print(banner(env), flush=True)
        code = supervisor.run()  # until Ctrl-C or SIGTERM; 0 once everything stopped
    finally:
        for service in reversed(started):
            service.stop()
    sys.exit(code)


if __name__ == "__main__":
    main()
