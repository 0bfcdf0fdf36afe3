"""Scale-out: workers sharing a port, instances sharing a database, one Outlook leader."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from pathlib import Path
from typing import Any

from tests import factories
from tests.conftest import Client, Daemon, open_client, start_daemon
from tests.fake_graph import FakeGraph
from tests.test_live import subscribe, update_where
from tests.test_meetings import at, next_weekday
from tests.test_outlook import booked_while_graph_is_down, outlook_settings, synced
from tests.test_reliability import alive, eventually, log_events


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def instances_answering(daemon: Daemon, connections: int = 40) -> set[str]:
    """The instances that answered `connections` fresh connections."""
    seen: set[str] = set()
    for _ in range(connections):
        async with open_client(daemon.url) as connection:
            seen.add((await Client(connection).data("dashboard", "get_real_time_metrics"))["instance"])
    return seen


async def test_two_workers_share_a_port_are_replaced_and_drain(postgres, db, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres, workers=2)
    try:
        await eventually(lambda: len(log_events(daemon, "listening")) == 2, 30)
        first = await instances_answering(daemon)
        assert len(first) == 2, first
        pids = {entry["pid"] for entry in log_events(daemon, "worker started")}
        assert {int(instance.rsplit(":", 1)[1]) for instance in first} == pids
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)
        await eventually(lambda: len(log_events(daemon, "worker started")) == 3, 15)
        [replacement] = {entry["pid"] for entry in log_events(daemon, "worker started")} - pids
        await eventually(lambda: len(log_events(daemon, "listening")) == 3, 30)
        after = await instances_answering(daemon)
        assert after == {i for i in first if not i.endswith(f":{victim}")} | {
            next(i for i in after if i.endswith(f":{replacement}"))}
        crashes = [e for e in log_events(daemon, "background task crashed") if e["task"].startswith("worker")]
        assert len(crashes) == 1 and "status -9" in crashes[0]["exception"]
        workers = pids - {victim} | {replacement}
    finally:
        status = daemon.stop()
    assert status == 0
    assert not any(alive(pid) for pid in workers)
    assert len(log_events(daemon, "worker stopped")) == 2


async def test_three_instances_share_changes_and_caches(postgres, db, tmp_path: Path) -> None:
    lead_id = await factories.lead(db, [("start", now(), "agent")])
    one = start_daemon(tmp_path, postgres)
    two = start_daemon(tmp_path, postgres, cache_ttl=60.0)
    three = start_daemon(tmp_path, postgres)
    try:
        async with open_client(one.url) as c1, open_client(two.url) as c2, open_client(three.url) as c3:
            writer, cached, subscriber = Client(c1), Client(c2), Client(c3)
            live = await subscribe(subscriber, "dashboard", "get_dashboard_stats")
            before = await cached.data("dashboard", "get_dashboard_stats")
            assert before["leads_by_step"]["start"] == 1
            await writer.data("leads", "update_lead_step", {"lead_id": str(lead_id), "new_step": "bant"})
            update = await update_where(subscriber, live["subscription"],
                                        lambda data: data["leads_by_step"]["bant"] == 1, 1.0)
            assert update["data"]["leads_by_step"]["start"] == 0

            async def cache_dropped() -> bool:
                stats = await cached.data("dashboard", "get_dashboard_stats")
                return bool(stats["leads_by_step"]["bant"] == 1)
            await eventually(cache_dropped, 1.0)
            instances = {(await c.data("dashboard", "get_real_time_metrics"))["instance"]
                         for c in (writer, cached, subscriber)}
            assert len(instances) == 3
    finally:
        for daemon in (one, two, three):
            daemon.stop()


def _pushes_by_instance(graph: FakeGraph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in graph.calls("POST", "/events"):
        agent = call["headers"].get("User-Agent", "")
        counts[agent] = counts.get(agent, 0) + 1
    return counts


async def _pending_meeting(daemon: Daemon, graph: FakeGraph, db: Any, day: dt.date, hour: int) -> str:
    """A meeting booked while Graph is down, left pending for the leader's worker."""
    try:
        return await booked_while_graph_is_down(daemon.url, graph, db, at(day, hour))
    finally:
        graph.requests.clear()  # the answering instance's failed inline pushes are not pushes
        graph.down = False


async def test_one_outlook_leader_and_a_takeover(postgres, db, tmp_path: Path) -> None:
    graph = FakeGraph()
    await graph.start()
    settings = {**outlook_settings(graph), "retry_seconds": 0.5}
    daemons = [start_daemon(tmp_path, postgres, outlook=settings) for _ in range(3)]
    try:
        await eventually(lambda: sum(len(log_events(d, "leading")) for d in daemons) == 1, 10)
        [leader] = [d for d in daemons if log_events(d, "leading")]
        others = [d for d in daemons if d is not leader]
        day = next_weekday()
        first = await _pending_meeting(others[0], graph, db, day, 10)

        await eventually(lambda: synced(db, first), 10)
        [pusher] = _pushes_by_instance(graph)
        assert pusher.endswith(f":{leader.process.pid}")
        assert sum(len(log_events(d, "leading")) for d in daemons) == 1

        leader.process.kill()
        leader.process.wait(10)
        second = await _pending_meeting(others[1], graph, db, day, 12)
        await eventually(lambda: synced(db, second), 10)
        [new_leader] = [d for d in others if log_events(d, "leading")]
        [pusher] = _pushes_by_instance(graph)
        assert pusher.endswith(f":{new_leader.process.pid}")
        assert {event.transaction_id for event in graph.events.values()} == {first, second}
        assert len(graph.events) == 2  # no meeting created twice
    finally:
        for daemon in daemons:
            daemon.stop()
        await graph.stop()


async def test_sync_rounds_of_one_mailbox_never_overlap(postgres, db, tmp_path: Path) -> None:
    graph = FakeGraph()
    await graph.start()
    daemons = [start_daemon(tmp_path, postgres, outlook=outlook_settings(graph)) for _ in range(2)]
    try:
        graph.person_creates("Dentista", at(next_weekday(), 15), at(next_weekday(), 16))
        async with open_client(daemons[0].url) as c1, open_client(daemons[1].url) as c2:
            rounds = await asyncio.gather(Client(c1).data("meetings", "sync_outlook_calendar"),
                                          Client(c2).data("meetings", "sync_outlook_calendar"))
        assert await db.fetchval("SELECT count(*) FROM outlook_busy") == 1
        # Each round opens with one request without a $skiptoken: a full start (no token) or
        # a $deltatoken. Had the rounds overlapped, both would have started without a token;
        # one after the other, the second follows the first's deltaLink.
        openings = [call["query"] for call in graph.calls("GET", "/calendarView/delta")
                    if "$skiptoken" not in call["query"]]
        assert len(openings) == 2
        assert "$deltatoken" not in openings[0] and "$deltatoken" in openings[1], openings
        assert sorted(r["full_resync"] for r in rounds) == [False, False]
    finally:
        for daemon in daemons:
            daemon.stop()
        await graph.stop()
