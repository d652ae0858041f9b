"""Settings from the environment, validated once, with errors that name the bad variable."""

from __future__ import annotations

import functools
import sys
from decimal import Decimal
from typing import Annotated

from pydantic import Field, PositiveInt, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.queues import QUEUES

# The sandbox bot's token; the Telegram fake accepts it. Not a secret: it opens nothing real.
SANDBOX_BOT_TOKEN = "123456:SANDBOX-TOKEN"
# The username the Telegram fake gives the bot of that token (sandbox.telegram_fake.state).
SANDBOX_BOT_USERNAME = "surplus_sandbox_bot"
OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"


def percent_to_basis_points(percent: str | int | Decimal) -> int:
    """A percentage as written by an operator ("10", "7.5", "2.25") in basis points, hundredths of
    a percent (1000, 750, 225). At most two decimals and within 0..100; ValueError otherwise."""
    value = Decimal(str(percent).strip())
    points = value * 100
    if not value.is_finite() or points != points.to_integral_value() or not 0 <= value <= 100:
        raise ValueError(f"a fee percentage must be between 0 and 100 with at most two decimals, got {percent!r}")
    return int(points)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_webhook_secret: SecretStr | None = None
    public_url: str | None = None
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    # The Mini App process (python -m webapp): where it listens, and the https address Telegram opens
    # it at (the "🗺 Map" button; unset outside the sandbox: no button). In the sandbox the web chat
    # opens it at WEBAPP_URL, by default this machine's WEBAPP_PORT.
    webapp_host: str = "127.0.0.1"
    webapp_port: int = Field(default=8082, ge=1, le=65535)
    webapp_url: str | None = Field(default=None, validate_default=True)
    # How many processes answer the Mini App (uvicorn workers on one socket; 1: the started process
    # answers itself). One process uses one core at most: more help where cores are free. On the
    # 2-core development machine, shared with Postgres and other work, 2 measured no better than 1
    # (bench/report.md, section 9), so 1 is the default.
    webapp_workers: int = Field(default=1, ge=1, le=64)
    # How old a Mini App's initData may be (its auth_date) before the API refuses it.
    webapp_auth_max_age_seconds: int = Field(default=24 * 3600, ge=60)
    # The map's tiles ({z}/{x}/{y} URL template) and the attribution shown under them. Unset:
    # OpenStreetMap outside the sandbox, none in the sandbox (pins on a plain background).
    map_tile_url: str | None = Field(default=None, validate_default=True)
    map_attribution: str = "© OpenStreetMap contributors"
    # Where `python -m tasks.metrics_exporter` serves the workers' metrics.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9808, ge=1, le=65535)

    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:15432/surplus"
    redis_url: str = "redis://127.0.0.1:16379/0"

    # Guards on every database connection the application opens (core/db.py), so no statement,
    # lock wait or forgotten transaction holds a worker or a row forever. Seconds; 0 turns one off.
    # A statement or lock timeout raises an OperationalError, which tasks retry with backoff. Keep the
    # lock timeout below the statement timeout, or a long lock wait is reported as a slow statement.
    db_statement_timeout_seconds: float = Field(default=30, ge=0)
    db_lock_timeout_seconds: float = Field(default=10, ge=0)
    db_idle_in_transaction_timeout_seconds: float = Field(default=60, ge=0)
    # Opening a connection to a Postgres that does not answer (a partition, not a refusal).
    db_connect_timeout_seconds: int = Field(default=10, ge=1)
    # Each process's connection pool: pool_size kept open, max_overflow more when busy. A checkout
    # that waits longer than db_pool_timeout_seconds fails (sqlalchemy.exc.TimeoutError), and the
    # task is retried with backoff instead of hanging.
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=10, gt=0)
    # The statements of every reply and reservation are prepared on the server once per connection
    # (core.db.PreparedStatement). A pooler that resets sessions between transactions (PgBouncer in
    # transaction mode, DISCARD ALL) loses them: false there, and they are sent whole each time.
    db_prepare_statements: bool = True

    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_url: str | None = None
    # Where Stripe Checkout sends the customer back, paid or not: normally the bot's chat,
    # https://t.me/<bot username>. Only the sandbox bot's name is known without asking Telegram,
    # so outside the sandbox it must be set whenever STRIPE_SECRET_KEY is (checked at startup).
    checkout_return_url: str | None = Field(default=None, validate_default=True)

    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    flower_basic_auth: SecretStr | None = None
    sentry_dsn: SecretStr | None = None

    # Telegram's paid broadcasts (`allow_paid_broadcast`: up to 1,000 messages/s instead of 30, for
    # 0.1 Telegram Stars a message) for a deal alert whose audience has at least
    # TELEGRAM_PAID_BROADCAST_MIN_AUDIENCE people: at 30/s, 300 people wait 10 s for the last alert.
    # Off by default: it costs the bot's Stars balance.
    telegram_paid_broadcast: bool = False
    telegram_paid_broadcast_min_audience: int = Field(default=300, ge=1)
    # Messages per second into one chat, and how many may go at once, for every process together
    # (core/ratelimit.py): a little under Telegram's 1/s with bursts of about 3, as beyond it Telegram
    # answers 429. Only a Telegram with other limits (a local fake) calls for other values.
    telegram_chat_rate: float = Field(default=0.95, gt=0)
    telegram_chat_burst: int = Field(default=2, ge=1)

    # Celery task events (what Flower shows live) for the updates' tasks, `updates.handle_update(s)`:
    # three event messages per task cost a tenth of a flash sale's worker CPU (bench/report.md), so
    # they are off; the updates queue, its rates (task signals) and every other task still show.
    # `make run`'s sandbox turns them on for the chat page's 🛠 panel.
    update_task_events: bool = False

    # A reservation waits this long for its payment before the units go back on sale.
    hold_minutes: int = Field(default=10, ge=1, le=60)
    # Customers may cancel a paid order (and get a refund) until this long before pickup starts.
    cancellation_cutoff_minutes: int = Field(default=60, ge=0, le=24 * 60)
    # A paid order nobody collected closes as "not collected" this long after its pickup window ends
    # (the business can still confirm a late pickup afterwards).
    pickup_grace_minutes: int = Field(default=30, ge=0, le=24 * 60)
    # Whether a not-collected order is refunded. Off by default: the food was kept aside and is lost.
    no_show_refund: bool = False

    # The platform's fee on each order: PLATFORM_FEE_PERCENT of the amount (up to two decimals,
    # rounded half up to a minor unit) plus PLATFORM_FEE_FIXED minor units; see domain.money.platform_fee.
    platform_fee_percent: str = "10"
    platform_fee_fixed: int = Field(default=0, ge=0, le=100_000)
    # true: a business sells only once its Stripe Connect account can take charges, and each sale is
    # a destination charge to it. false: the platform collects every payment in its own account and
    # pays businesses out by hand (their statements say what they are owed); Connect stays optional.
    payouts_require_connect: bool = True

    # Redis redelivers a message no worker acknowledged (its worker died) this many seconds after it
    # was delivered or fell due (kombu's visibility_timeout; docs/redelivery.md). Unset: each queue's
    # default from celeryconfig.py. BROKER_VISIBILITY_TIMEOUT sets every queue, ..._TIMEOUTS some
    # ("updates=60,payments=180"), and wins.
    broker_visibility_timeout: int | None = Field(default=None, ge=1)
    broker_visibility_timeouts: Annotated[dict[str, PositiveInt], NoDecode] = Field(default_factory=dict)

    # A stuck task is interrupted (SoftTimeLimitExceeded) and then failed (TimeLimitExceeded), by a
    # timer in the process running it (core/time_limits.py). Seconds; 0 turns one off. Every queue's
    # visibility timeout must exceed the hard limit (celeryconfig.VISIBILITY_TIMEOUTS).
    task_soft_time_limit_seconds: float = Field(default=60, ge=0)
    task_time_limit_seconds: float = Field(default=90, ge=0)

    # A user who sends more updates than this in 10 s is slowed down (chat/flood.py): the rest are
    # answered but not handled. A person tapping fast stays far below it; a script does not.
    flood_max_updates_per_window: int = Field(default=30, ge=1)

    # How long a done-mark (a hand-over published, a button press answered: core/marks.py) may wait
    # for others to share its UPDATE. Nothing waits for the marks but a reader of those rows (the
    # tests read them to know an update is fully answered, and set 0.05).
    marks_delay_seconds: float = Field(default=0.5, gt=0, le=60)

    # How long the gateway remembers an update_id to drop Telegram's redeliveries.
    update_dedup_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # The gateway queues the updates that arrive within this many milliseconds of each other as one
    # task (`updates.handle_updates`, at most UPDATE_BATCH_MAX updates): in a flash sale a worker then
    # pays Celery's and the transaction's costs once for several taps (bench/report.md). An update
    # arriving after a quiet moment is queued at once; only a busy gateway waits, that long at most.
    # 0: one task per update.
    update_batch_window_ms: float = Field(default=5.0, ge=0, le=100)
    update_batch_max: int = Field(default=50, ge=1, le=500)
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("platform_fee_percent", mode="before")
    @classmethod
    def _fee_percent(cls, value: object) -> str:
        text = str(value).strip()
        try:
            percent_to_basis_points(text)
        except (ValueError, ArithmeticError):
            raise ValueError("must be a percentage from 0 to 100 with at most two decimals, like 10 or 7.5") from None
        return text

    @property
    def platform_fee_basis_points(self) -> int:
        return percent_to_basis_points(self.platform_fee_percent)

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _parse_admin_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
            return frozenset(int(p) for p in parts)
        return value

    @field_validator("broker_visibility_timeout", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("broker_visibility_timeouts", mode="before")
    @classmethod
    def _per_queue(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(pair) != 2 or pair[0].strip() not in QUEUES for pair in pairs):
            raise ValueError(f"must look like updates=60,payments=180 (queues: {', '.join(QUEUES)})")
        return {name.strip(): seconds.strip() for name, seconds in pairs}

    @field_validator("telegram_api_url", "stripe_api_url", "public_url", mode="before")
    @classmethod
    def _http_url(cls, value: str | None, info) -> str | None:
        if not value:  # an empty variable means "unset"
            return "https://api.telegram.org" if info.field_name == "telegram_api_url" else None
        if not str(value).startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return str(value).rstrip("/")

    @field_validator("webapp_url")
    @classmethod
    def _webapp_url(cls, value: str | None, info) -> str | None:
        value = (value or "").strip().rstrip("/")
        if value:
            if not value.startswith(("http://", "https://")):
                raise ValueError("must start with https:// (http:// only on this machine)")
            return value
        if info.data.get("bot_token") is None:  # the sandbox's web chat opens it on this machine
            return f"http://127.0.0.1:{info.data.get('webapp_port', 8082)}"
        return None

    @field_validator("map_tile_url")
    @classmethod
    def _map_tile_url(cls, value: str | None, info) -> str | None:
        value = (value or "").strip()
        if value.lower() == "none":
            return None
        if value:
            if not value.startswith(("http://", "https://")) or "{z}" not in value:
                raise ValueError("must be an https:// URL template with {z}, {x} and {y}")
            return value
        return None if info.data.get("bot_token") is None else OSM_TILES

    @field_validator("checkout_return_url")
    @classmethod
    def _checkout_return_url(cls, value: str | None, info) -> str | None:
        value = (value or "").strip()
        if value:
            if not value.startswith(("http://", "https://")):
                raise ValueError("must start with http:// or https://")
            return value
        # Fields declared above this one are in info.data (a field that failed is missing there).
        if info.data.get("bot_token") is None:
            return f"https://t.me/{SANDBOX_BOT_USERNAME}"
        if info.data.get("stripe_secret_key") is not None:
            raise ValueError("must be set when STRIPE_SECRET_KEY is: where Stripe Checkout sends the customer "
                             "back, normally https://t.me/<bot username>")
        return None

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://") :]
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg2://" + value[len("postgresql://") :]
        if not value.startswith("postgresql+psycopg2://"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_only(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL")
        return value

    @field_validator("flower_basic_auth")
    @classmethod
    def _user_colon_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and ":" not in value.get_secret_value():
            raise ValueError("must look like user:password")
        return value

    @property
    def sandbox(self) -> bool:
        """No real bot token: everything talks to the local fakes."""
        return self.bot_token is None

    @property
    def telegram_token(self) -> str:
        return self.bot_token.get_secret_value() if self.bot_token else SANDBOX_BOT_TOKEN

    @property
    def webhook_mode(self) -> bool:
        return self.public_url is not None


def _explain(error: ValidationError) -> str:
    lines = ["Invalid configuration in the environment:"]
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else "?"
        lines.append(f"  {name}: {item['msg']}")
    lines.append("See .env.example for what each variable means.")
    return "\n".join(lines)


def load_settings() -> Settings:
    """Read and validate the environment; raise SystemExit with a readable message if wrong."""
    try:
        return Settings()
    except ValidationError as error:
        raise SystemExit(_explain(error)) from None


@functools.cache
def get_settings() -> Settings:
    return load_settings()


if __name__ == "__main__":  # `python -m core.settings` checks the environment.
    s = load_settings()
    print(f"configuration OK (sandbox={s.sandbox}, webhook_mode={s.webhook_mode})", file=sys.stderr)
