"""Benchmark finding deals: /deals nearby with filters among a city's offers, and the audience of a
new offer among its alert subscribers, each next to the haversine scan the project used before
PostGIS, on the same data in the same run.

    python -m bench.bench_discovery [--offers 50000] [--subscribers 200000] [--json out.json]

A private Postgres (migrated to head: PostGIS, JIT off) on a free port in ``.run/``. A city of
40 × 40 km around Berlin: businesses with ten active offers each (random category, diet,
allergens, price), and alert subscribers with a radius of 1, 2, 5 or 10 km. Then, for random
customer positions and random businesses:

* nearby: ``domain.catalog.browse`` sorted by distance within 5 km, with filters (a category,
  "no nuts", a maximum price), against the old query: the same filters, haversine over every
  active offer, ordered by it;
* audience: ``domain.announcements.audience`` (the GiST index on the box each subscriber's radius
  reaches, then ``ST_DWithin``) against the old query (haversine over every subscriber, behind a
  latitude band).

Each figure is the wall time of the call (query, rows and their objects, on loopback); for the
audience, whose thousands of rows cost Python time of their own, also Postgres's own time for the
statement (EXPLAIN ANALYZE: planning and execution).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CENTRE = (52.52, 13.405)
SPAN_LAT, SPAN_LON = 0.36, 0.59  # about 40 km each way at Berlin's latitude
OFFERS_PER_BUSINESS = 10
OWNER_BASE, SUBSCRIBER_BASE = 6_000_000_000, 7_000_000_000
EARTH_RADIUS_KM = 6371.0
DEGREE_KM = 111.0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _summary(times_s: list[float]) -> dict:
    ms = [t * 1000 for t in times_s]
    return {"count": len(ms), "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(_percentile(ms, 0.99), 2),
            "max_ms": round(max(ms), 2)}


def _fill(connection, offers: int, subscribers: int, seed: int) -> None:
    import sqlalchemy as sa

    businesses = max(offers // OFFERS_PER_BUSINESS, 1)
    connection.execute(sa.text("SELECT setseed(:seed)"), {"seed": seed / 1000})
    connection.execute(sa.text(
        "INSERT INTO users (id, first_name) SELECT :base + g, 'owner' FROM generate_series(1, :n) g"),
        {"base": OWNER_BASE, "n": businesses})
    connection.execute(sa.text(
        "INSERT INTO businesses (owner_id, name, address, phone, latitude, longitude, status, charges_enabled) "
        "SELECT :base + g, 'Shop ' || g, 'Street ' || g, '+4930123456', "
        ":lat + (random() - 0.5) * :dlat, :lon + (random() - 0.5) * :dlon, 'verified', true "
        "FROM generate_series(1, :n) g"),
        {"base": OWNER_BASE, "n": businesses, "lat": CENTRE[0], "lon": CENTRE[1], "dlat": SPAN_LAT,
         "dlon": SPAN_LON})
    connection.execute(sa.text(
        "INSERT INTO offers (business_id, title, description, price_minor, original_price_minor, currency, "
        "quantity, pickup_start, pickup_end, status, published_at, category, diet, allergens) "
        "SELECT b.id, 'Bag ' || g, 'Surplus of the day', 200 + floor(random() * 900)::int, 1500, 'EUR', 5, "
        "now() + interval '1 hour', now() + interval '3 hours', 'active', now() - random() * interval '10 hours', "
        "(ARRAY['bakery','meals','groceries','produce','dairy','other'])[1 + floor(random() * 6)::int], "
        "CASE WHEN random() < 0.3 THEN ARRAY['vegan']::varchar[] ELSE '{}' END, "
        "CASE WHEN random() < 0.5 THEN ARRAY['gluten']::varchar[] ELSE ARRAY['milk','nuts']::varchar[] END "
        "FROM businesses b, generate_series(1, :per) g"),
        {"per": OFFERS_PER_BUSINESS})
    connection.execute(sa.text(
        "INSERT INTO users (id, first_name, latitude, longitude, deal_alerts_km) "
        "SELECT :base + g, 'subscriber', :lat + (random() - 0.5) * :dlat, :lon + (random() - 0.5) * :dlon, "
        "(ARRAY[1, 2, 5, 10])[1 + floor(random() * 4)::int] FROM generate_series(1, :n) g"),
        {"base": SUBSCRIBER_BASE, "n": subscribers, "lat": CENTRE[0], "lon": CENTRE[1], "dlat": SPAN_LAT,
         "dlon": SPAN_LON})


def start_city(directory: Path, offers: int, subscribers: int, seed: int):
    """A private Postgres in ``directory`` (migrated to head), filled with the city and analysed:
    (the server, for the caller to stop, and the seconds the filling took)."""
    import sqlalchemy as sa

    from bench.bench_notifications import _migrate
    from localenv.services import PostgresServer, free_port

    postgres = PostgresServer(directory / "postgres", free_port(), database="bench").start()
    try:
        _migrate(postgres.url)
        engine = sa.create_engine(postgres.url)
        began = time.monotonic()
        with engine.begin() as connection:
            _fill(connection, offers, subscribers, seed)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE"))
        engine.dispose()
        return postgres, time.monotonic() - began
    except BaseException:
        postgres.stop(mode="immediate")
        raise


def _haversine(lat1, lon1, lat2, lon2):
    """The great-circle distance as the project computed it before PostGIS."""
    from sqlalchemy import func

    dlat = func.radians(lat2 - lat1)
    dlon = func.radians(lon2 - lon1)
    a = func.power(func.sin(dlat / 2), 2) + func.cos(func.radians(lat1)) * func.cos(func.radians(lat2)) * func.power(
        func.sin(dlon / 2), 2)
    return 2 * EARTH_RADIUS_KM * func.asin(func.least(1.0, func.sqrt(a)))


def _old_nearby(session, now, latitude, longitude, filters):
    """/deals nearest before PostGIS: the same filters, haversine over every active offer."""
    from dataclasses import replace

    from sqlalchemy import Float, and_, literal, select

    from domain import catalog
    from models import Business, Offer

    distance = _haversine(literal(latitude, Float), literal(longitude, Float), Business.latitude, Business.longitude)
    conditions = [*catalog._base(now), *catalog._conditions(replace(filters, radius_km=None), now, None),
                  Business.latitude.is_not(None), distance <= filters.radius_km]
    return session.execute(
        select(Offer, Business, distance.label("distance")).join(Business, Offer.business_id == Business.id)
        .where(and_(*conditions)).order_by(distance, Offer.id).limit(catalog.PAGE_SIZE + 1)).all()


def _old_audience(session, business):
    """The deal-alert audience before PostGIS: haversine over every subscriber in a latitude band."""
    return session.execute(_old_audience_query(business)).all()


def _server_ms(session, statement) -> float:
    """What Postgres itself spends on a statement (EXPLAIN ANALYZE: planning and execution, no rows sent)."""
    import sqlalchemy as sa

    sql = statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    plan = session.execute(sa.text(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}")).scalar()
    return float(plan[0]["Planning Time"]) + float(plan[0]["Execution Time"])


def _old_audience_query(business):
    from sqlalchemy import and_, literal, or_, select

    from models import Follow, User

    follower = select(Follow.user_id).where(Follow.business_id == business.id, Follow.user_id == User.id)
    distance = _haversine(User.latitude, User.longitude, literal(business.latitude), literal(business.longitude))
    box = User.deal_alerts_km / DEGREE_KM
    nearby = and_(User.deal_alerts_km.is_not(None), User.latitude.is_not(None),
                  User.latitude.between(business.latitude - box, business.latitude + box),
                  distance <= User.deal_alerts_km)
    return (select(User.id, User.language, follower.exists(), distance)
            .where(User.deleted_at.is_(None), User.reachable.is_(True), User.id != business.owner_id,
                   or_(follower.exists(), nearby)).order_by(User.id))


def run(offers: int = 50_000, subscribers: int = 200_000, queries: int = 300, audiences: int = 40,
        seed: int = 21) -> dict:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from domain import announcements, catalog
    from domain.catalog import Filters, Sort
    from models import Business, Offer

    directory = ROOT / ".run" / f"bench-discovery-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    postgres = None
    rng = random.Random(seed)
    try:
        postgres, fill_s = start_city(directory, offers, subscribers, seed)
        engine = sa.create_engine(postgres.url)  # new connections: the database's settings (jit = off)
        now = datetime.now(UTC)

        def position() -> tuple[float, float]:
            return (CENTRE[0] + (rng.random() - 0.5) * SPAN_LAT * 0.8,
                    CENTRE[1] + (rng.random() - 0.5) * SPAN_LON * 0.8)

        cases = [(position(), Filters(category=rng.choice(("bakery", "meals", "produce")), avoid=("nuts",),
                                      radius_km=5, max_price_minor=rng.choice((500, 800))))
                 for _ in range(queries)]
        nearby: dict[str, list[float]] = {"postgis": [], "haversine": []}
        found: dict[str, int] = {"postgis": 0, "haversine": 0}
        mismatches = 0
        with Session(engine) as session:
            jit = session.scalar(sa.text("SHOW jit"))
            for warm in cases[:10]:  # caches and plans, not counted
                catalog.browse(session, now, Sort.NEAREST, latitude=warm[0][0], longitude=warm[0][1], filters=warm[1])
                _old_nearby(session, now, warm[0][0], warm[0][1], warm[1])
            for (latitude, longitude), filters in cases:
                started = time.perf_counter()
                page = catalog.browse(session, now, Sort.NEAREST, latitude=latitude, longitude=longitude,
                                      filters=filters)
                nearby["postgis"].append(time.perf_counter() - started)
                started = time.perf_counter()
                old = _old_nearby(session, now, latitude, longitude, filters)
                nearby["haversine"].append(time.perf_counter() - started)
                found["postgis"] += len(page.items)
                found["haversine"] += min(len(old), catalog.PAGE_SIZE)
                if [item.offer.id for item in page.items][:3] != [row[0].id for row in old][:3]:
                    mismatches += 1  # the two distances differ by a few metres: a near tie may swap
                session.expunge_all()

            business_ids = list(session.scalars(sa.select(Business.id)))
            picked = rng.sample(business_ids, min(audiences, len(business_ids)))
            audience: dict[str, list[float]] = {"postgis": [], "haversine": []}
            server: dict[str, list[float]] = {"postgis": [], "haversine": []}
            sizes, differences = [], 0
            for business_id in business_ids[:3]:  # warm-up, not counted
                warm_offer = session.scalars(sa.select(Offer).where(Offer.business_id == business_id).limit(1)).one()
                announcements.audience(session, warm_offer)
                _old_audience(session, warm_offer.business)
            for business_id in picked:
                offer = session.scalars(sa.select(Offer).where(Offer.business_id == business_id).limit(1)).one()
                started = time.perf_counter()
                new = announcements.audience(session, offer)
                audience["postgis"].append(time.perf_counter() - started)
                started = time.perf_counter()
                old_rows = _old_audience(session, offer.business)
                audience["haversine"].append(time.perf_counter() - started)
                sizes.append(len(new))
                server["postgis"].append(_server_ms(session, announcements.audience_query(offer.business, now)) / 1000)
                server["haversine"].append(_server_ms(session, _old_audience_query(offer.business)) / 1000)
                differences += len({r.user_id for r in new} ^ {row[0] for row in old_rows})
        engine.dispose()
        return {
            "offers": offers, "businesses": max(offers // OFFERS_PER_BUSINESS, 1), "subscribers": subscribers,
            "fill_s": round(fill_s, 1), "jit": jit,
            "nearby": {"queries": queries, "radius_km": 5, **{k: _summary(v) for k, v in nearby.items()},
                       "found": found, "first_three_differ": mismatches},
            "audience": {"offers": len(picked), "median_size": statistics.median(sizes),
                         **{k: _summary(v) for k, v in audience.items()},
                         "server": {k: _summary(v) for k, v in server.items()},
                         "recipients_differing": differences},
        }
    finally:
        if postgres is not None:
            postgres.stop(mode="immediate")
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=int, default=50_000)
    parser.add_argument("--subscribers", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.offers, args.subscribers)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
