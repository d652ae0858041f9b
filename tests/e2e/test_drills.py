"""The fault drills and the soak (bench/chaos.py, bench/soak.py), short, on one system of their own:
everything `make run` runs, under its supervisor, on a private Redis and Postgres, with people
acting through the Telegram and Stripe fakes. Each fault strikes while the traffic runs, then the
invariants are checked: nothing lost, nothing doubled, stock and money exact, and after Redis or
Postgres comes back everything pending is done within 30 s. Then 45 s of soak: samples of every
process and the chart (no growth threshold on so short a run: that would be noise).

Three faults find real losses in the current code. Each is caught deterministically by the
drill's probe (a customer the drill moves itself, held at the right line), and each is marked
`xfail(strict=True)` here with what is lost, so the test turns red the day the fix lands: flip it.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

# Redis down 5 s; after a kill, 10 s for what is pending (what a killed worker held comes back only
# after the visibility timeout and kombu's restore sweep: `make chaos` waits for it, the test does not).
SETTINGS = {"short": True, "redis_down": 5.0, "postgres_down": 2.0, "traffic_s": 3.0, "settle": 30.0,
            "kill_settle": 10.0, "visibility_timeout": 15, "beat_wait": 0.0}
SOAK_MINUTES = 0.75
FAULTS = ("baseline", "redis", "postgres", "worker_child", "worker_main", "beat", "gateway")

# (fault, kind of loss) -> what the current code loses there.
KNOWN_LOSSES = {
    ("redis", "handover"): (
        "Hand-over lost: a transaction that commits while Redis is down loses its follow-up task. The probe's "
        "“✅ Reserve and pay” committed (answered “⏳ Reserving…”) after Redis had stopped; "
        "core.handover.enqueue_after_commit's publish failed after the commit and nothing kept it, so "
        "reservations.place_order never ran: no order, no refusal, the customer waits forever."),
    ("worker_child", "tap"): (
        "Tap never answered: a pool process SIGKILLed after its update's commit, while Telegram was answering "
        "the button press. The redelivered update is a duplicate (processed_updates has it), and "
        "tasks/updates.py answers callback queries only for a first delivery (the answer's text is not kept), "
        "so the customer's spinner never stops."),
    ("worker_main", "update"): (
        "Acknowledged update lost: the worker's main process SIGKILLed while its BRPOP had taken the probe's "
        "update from the queue and before kombu's Redis transport put it in the unacked set (BRPOP, then a "
        "separate HSET/ZADD). The gateway had acknowledged it, Telegram will not send it again, and no copy "
        "is left in Redis."),
}


@pytest.fixture(scope="module")
def drills(tmp_path_factory):
    from bench import chaos, soak
    from bench.stack import Stack
    from bench.traffic import Profile, Traffic

    settings = chaos.settings_for(**SETTINGS)
    chart = tmp_path_factory.mktemp("soak") / "soak.png"
    with Stack("drills", visibility_timeout=settings["visibility_timeout_s"]) as stack:
        traffic = Traffic(stack, Profile(**settings["profile"]))
        traffic.seed()
        drilled = chaos.drill(stack, traffic, settings)
        soaked = soak.run(SOAK_MINUTES, stack=stack, traffic=traffic, chart_path=chart)
    return {"chaos": drilled, "soak": soaked, "chart": chart}


def _phase(drills, fault: str) -> dict:
    return next(p for p in drills["chaos"]["phases"] if p["phase"] == fault)


def _what(items: list[dict], kinds: set[str] | None = None) -> list[str]:
    return [item["what"] for item in items if kinds is None or item["kind"] in kinds]


def _known(fault: str, kind: str) -> list:
    reason = KNOWN_LOSSES.get((fault, kind))
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


@pytest.mark.parametrize("fault", FAULTS)
def test_every_update_is_received_handled_and_answered(drills, fault):
    phase = _phase(drills, fault)
    updates = phase["updates"]
    assert updates["sent"] > 0, "no traffic in this phase"
    assert updates["received"] == updates["sent"]
    assert updates["answered_more_than_once"] == 0
    # What a known loss covers is asserted (and expected to fail) by its own test below.
    kinds = {"update", "reply", "tap"} - {kind for (f, kind) in KNOWN_LOSSES if f == fault}
    assert _what(phase["lost"], kinds) == []


@pytest.mark.parametrize("fault", FAULTS)
def test_no_hand_over_is_lost(drills, fault):
    if (fault, "handover") in KNOWN_LOSSES:
        pytest.skip("asserted by test_known_loss")
    assert _what(_phase(drills, fault)["lost"], {"handover"}) == []


@pytest.mark.parametrize(("fault", "kind"), [pytest.param(fault, kind, marks=_known(fault, kind))
                                             for fault, kind in KNOWN_LOSSES])
def test_known_loss(drills, fault, kind):
    assert _what(_phase(drills, fault)["lost"], {kind}) == []


@pytest.mark.parametrize("fault", FAULTS)
def test_nothing_is_doubled(drills, fault):
    phase = _phase(drills, fault)
    assert phase["doubled"] == []
    assert phase["sent_unrecorded"] == []


@pytest.mark.parametrize("fault", FAULTS)
def test_stock_and_money_are_exact(drills, fault):
    """Stock against the ledger; Stripe against the ledger, order by order. (A refund never made is a
    lost hand-over, asserted above.)"""
    phase = _phase(drills, fault)
    assert phase["stock"]["exact"], phase["stock"]["problems"]
    assert phase["stock"]["oversold_offers"] == 0
    assert phase["money"]["exact"], phase["money"]
    assert _what(phase["lost"], {"stock", "money"}) == []


@pytest.mark.parametrize("fault", ["redis", "postgres"])
def test_everything_pending_is_done_within_30_s_after_the_service_is_back(drills, fault):
    """Done: nothing left that could still happen (what is lost for good is asserted above)."""
    phase = _phase(drills, fault)
    assert phase["done_s"] is not None and phase["done_s"] <= 30, phase["pending_at_end"]


def test_every_killed_process_came_back(drills):
    for fault in ("worker_child", "worker_main", "beat", "gateway"):
        assert _phase(drills, fault)["restart_s"] is not None, fault
    restarts = drills["chaos"]["restarts"]
    assert restarts["worker-updates"] >= 1 and restarts["beat"] == 1 and restarts["gateway"] == 1


def test_the_soak_samples_every_process_and_draws_the_chart(drills):
    soaked = drills["soak"]
    assert len(soaked["samples"]) >= 10
    labels = set(soaked["growth"])
    assert {"gateway", "beat", "metrics", "worker-updates", "worker-updates pool 1", "redis", "postgres"} <= labels
    for label, figures in soaked["growth"].items():
        assert figures["rss_mb_end"] and figures["fds_end"], label
    assert soaked["growth"]["worker-updates pool 1"]["db_end"] >= 1  # connections are matched to processes
    assert drills["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert soaked["audit"]["updates"]["sent"] > 0
    assert soaked["audit"]["updates"]["answered"] == soaked["audit"]["updates"]["sent"]
