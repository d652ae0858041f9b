"""The fault drills and the soak (bench/chaos.py, bench/soak.py), short, on one system of their own:
everything `make run` runs, under its supervisor, on a private Redis and Postgres, with people
acting through the Telegram and Stripe fakes. Each fault strikes while the traffic runs, then the
invariants are checked: nothing lost, nothing doubled, nobody told their action failed, stock and
money exact, and after Redis or Postgres comes back everything pending is done within 30 s. Then
15 s of soak: samples of every process and the chart (no growth threshold on so short a run: that
would be noise).

Three faults are aimed by the drill's probe (a customer the drill moves itself, held at the line
where the fault hurts most); each once lost something for good, and each has its own test below:

* Redis stopped while the probe's "Reserve and pay" commits: its hand-over to the reservation
  queue could not be published (now recorded in its transaction and published again: core.handover).
* A worker's pool process SIGKILLed after the probe's commit, while Telegram was answering the
  button press: the answer was never given (now an outbox row its redelivery sends).
* A worker's main process SIGKILLed with the probe's update taken by its BRPOP and not yet recorded
  as unacknowledged: acknowledged to Telegram and gone (now the inbox keeps a copy, core.inbox, and
  the broker one, core.broker, which the workers' sweep pushes back after 30 s; the short drill sends
  `maintenance.requeue_lost_updates` with grace 0, as an operator would, instead of waiting for
  either).
"""

from __future__ import annotations

import json

import pytest

# The module's system, the drill and the soak run in the first test (the module fixture): about
# 100 s on an idle machine; the limit leaves room for a shared, busy one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

# Three seconds of traffic per phase, Redis down 5 s; after a kill, up to 20 s for what is pending.
SETTINGS = {"short": True, "redis_down": 5.0, "postgres_down": 2.0, "traffic_s": 3.0, "settle": 30.0,
            "kill_settle": 20.0, "visibility_timeout": 15, "beat_wait": 0.0, "operator_sweep": True}
SOAK_MINUTES = 0.25
SOAK_INTERVAL_S = 1.0
SOAK_MIN_SAMPLES = 10  # 15 at one a second; a sample can take longer than that on a busy machine
FAULTS = ("baseline", "redis", "postgres", "worker_child", "worker_main", "beat", "gateway")

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
        soaked = soak.run(SOAK_MINUTES, interval=SOAK_INTERVAL_S, stack=stack, traffic=traffic, chart_path=chart,
                          min_samples=SOAK_MIN_SAMPLES)
    done: dict[str, int] = {}  # how far the people got, over the drill and the soak
    for outcomes in traffic.record.outcomes.values():
        for what, count in outcomes.items():
            done[what] = done.get(what, 0) + count
    return {"chaos": drilled, "soak": soaked, "chart": chart, "people": done}


def _phase(drills, fault: str) -> dict:
    return next(p for p in drills["chaos"]["phases"] if p["phase"] == fault)


def _told(details) -> str:
    """Details in full, as text: pytest shortens a long dict's repr to its first items, and a CI log
    is all a failure leaves."""
    return json.dumps(details, indent=1, default=str, ensure_ascii=False)


def _what(items: list[dict], kinds: set[str] | None = None) -> list[str]:
    return [item["what"] for item in items if kinds is None or item["kind"] in kinds]


def test_the_people_reserve_pay_cancel_and_publish(drills):
    """The traffic reaches every step of the chat (else the drills would prove nothing); a drill's
    phase is short, so cancelling (a few steps after paying) is mostly done in the soak."""
    done = drills["people"]
    assert done.get("reserved", 0) > 0 and done.get("paid", 0) > 0 and done.get("published", 0) > 0, done
    assert done.get("released", 0) + done.get("cancelled_paid", 0) > 0, done


@pytest.mark.parametrize("fault", FAULTS)
def test_every_update_is_received_handled_and_answered_once(drills, fault):
    phase = _phase(drills, fault)
    updates = phase["updates"]
    assert updates["sent"] > 0, "no traffic in this phase"
    assert updates["received"] == updates["sent"]
    assert _what(phase["lost"], {"update", "reply", "tap"}) == []  # first: it names what is missing
    assert updates["answered"] == updates["sent"], _told({"late": phase["late"], "lost": phase["lost"],
                                                          "pending": phase.get("pending_at_end")})
    assert updates["answered_more_than_once"] == 0
    assert phase["failed"] == []  # nobody was told "something went wrong"
    assert phase["waits_without_answer"] == {}, _told({"waits": phase["waits_without_answer_details"],
                                                       "late": phase["late"], "pending": phase.get("pending_at_end")})


@pytest.mark.parametrize("fault", FAULTS)
def test_no_hand_over_is_lost(drills, fault):
    assert _what(_phase(drills, fault)["lost"], {"handover"}) == []


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


def test_a_reservation_committed_while_redis_is_down_is_still_placed(drills):
    """The probe's "Reserve and pay" committed after Redis had stopped, so its hand-over could not
    be published then; the customer still gets the Pay button (or hears it sold out)."""
    probe = _phase(drills, "redis")["fault_details"]
    assert probe["probe_held_before_commit"], "the probe was not caught before its commit"
    assert probe["probe_handled"] and probe["probe_tap_answered"]
    assert probe["probe_sees"] in ("pay", "refused"), _told(probe)


def test_a_tap_whose_worker_died_after_its_commit_is_answered(drills):
    """The pool process was SIGKILLed after the probe's commit while Telegram was answering the button
    press; the redelivered update answers it and the reservation goes on."""
    probe = _phase(drills, "worker_child")["fault_details"]
    assert probe["moment"].startswith("after its commit"), probe["moment"]
    assert probe["probe_tap_answered"], probe
    assert probe["probe_sees"] in ("pay", "refused"), _told(probe)


def test_an_update_lost_with_a_worker_main_process_comes_back_from_the_inbox(drills):
    """The killed worker's BRPOP had taken the probe's update from the queue (acknowledged to
    Telegram, not yet recorded as unacknowledged); the inbox's sweep queued it again, and it was
    handled and answered."""
    probe = _phase(drills, "worker_main")["fault_details"]
    if not probe["probe_taken_from_queue"]:
        # The drill stops the worker with its BRPOP waiting, then taps; when the BRPOP was not waiting
        # at that moment the update stayed in the queue, and the phase's other tests judge what became
        # of it. Nothing about the inbox to judge in such a run.
        pytest.skip("the kill did not come while the BRPOP held the probe's update (timing of this run)")
    requeued = [update_id for sweep in probe["sweeps"] for update_id in sweep["requeued"]]
    assert probe["probe_update_id"] in requeued, probe["sweeps"]
    assert probe["probe_handled"] and probe["probe_tap_answered"], probe


# One sighting (1 of 7 runs, before the inbox resent a processed update's unsent replies) is not
# understood yet: the probe's chat still on "⏳ Reserving…" at the end of the phase, nothing reported
# lost. That outcome alone is an expected failure (README "Fault drills" has the details); any other
# (the confirmation unchanged, the message gone, the tap unanswered) fails the test.
STILL_RESERVING = (
    "Intermittent (1 of 7 runs, with 10 s to settle, none in the 20 runs since): after the probe's update came "
    "back from the inbox and was handled, its chat still showed “⏳ Reserving…” instead of the Pay button at the "
    "end of the phase; nothing was reported lost. Not yet known whether it was late or an earlier edit resent "
    "over a later one (the update is delivered twice: the inbox's copy and kombu's restored one).")


def test_the_customer_whose_update_came_back_from_the_inbox_gets_the_pay_button(drills):
    probe = _phase(drills, "worker_main")["fault_details"]
    assert probe["probe_tap_answered"], _told(probe)
    if probe["probe_sees"] == "still reserving":
        pytest.xfail(STILL_RESERVING + " This run: " + _told(probe))
    assert probe["probe_sees"] in ("pay", "refused"), _told(probe)


def test_every_killed_process_came_back(drills):
    for fault in ("worker_child", "worker_main", "beat", "gateway"):
        assert _phase(drills, fault)["restart_s"] is not None, fault
    restarts = drills["chaos"]["restarts"]
    assert restarts["worker-updates"] >= 1 and restarts["beat"] == 1 and restarts["gateway"] == 1


def test_the_soak_samples_every_process_and_draws_the_chart(drills):
    soaked = drills["soak"]
    assert len(soaked["samples"]) >= SOAK_MIN_SAMPLES
    labels = set(soaked["growth"])
    assert {"gateway", "beat", "metrics", "worker-updates", "worker-updates pool 1", "redis", "postgres"} <= labels
    for label, figures in soaked["growth"].items():
        assert figures["rss_mb_end"] and figures["fds_end"], label
    assert soaked["growth"]["worker-updates pool 1"]["db_end"] >= 1  # connections are matched to processes
    assert drills["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert soaked["audit"]["updates"]["sent"] > 0
    assert soaked["audit"]["updates"]["answered"] == soaked["audit"]["updates"]["sent"]
    # Hand-overs, stock and money are audited system-wide: what a fault phase lost is its finding, not the soak's.
    earlier = {item["what"] for phase in drills["chaos"]["phases"] for item in phase["lost"] + phase["doubled"]}
    assert [item for item in soaked["audit"]["lost"] + soaked["audit"]["doubled"] if item["what"] not in earlier] == []
