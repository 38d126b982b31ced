"""The workers' recent rings as one list: time-ordered ids, exact merges, the view.

The merge is checked against the truth (every entry of every ring, sorted)
while entries keep coming between the parts' answers, as they do when the
workers answer one after another: paging finds every entry once, following
misses none and repeats none.
"""

from __future__ import annotations

import random

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from wighaven.observe.recent import (
    SLOTS, WORKER_SLOT_ENV, ConsecutiveIds, LogRing, RequestRing, TimeOrderedIds, process_ids,
)
from wighaven.observe.recent_merge import (
    local_part, merge_following, merge_newest, trimmed, valid_part,
)
from wighaven.observe.recent_view import RecentView


class FakeClock:
    def __init__(self, now=1796300000.0):
        self.now = now

    def __call__(self):
        return self.now


class IdsTests(SynchronousTestCase):

    def test_consecutive_ids_and_their_watermark(self):
        ids = ConsecutiveIds()
        self.assertEqual(ids.watermark(), 0)
        self.assertEqual([next(ids) for _ in range(3)], [1, 2, 3])
        self.assertEqual(ids.watermark(), 3)

    def test_time_ordered_ids_grow_carry_their_slot_and_stay_exact_in_json_numbers(self):
        clock = FakeClock()
        ids = TimeOrderedIds(5, clock)
        given = [next(ids) for _ in range(1000)]  # many in the same 10 us
        self.assertEqual(given, sorted(set(given)))
        self.assertTrue(all(i % SLOTS == 5 for i in given))
        self.assertLess(given[-1], 2 ** 53)
        clock.now = 3471292800.0  # 2080: past what a double holds exactly, still growing
        self.assertGreater(next(ids), given[-1])

    def test_they_order_two_workers_entries_by_time(self):
        clock = FakeClock()
        a, b = TimeOrderedIds(0, clock), TimeOrderedIds(1, clock)
        first = next(b)
        clock.now += 0.001
        second = next(a)
        clock.now += 0.001
        third = next(b)
        self.assertLess(first, second)
        self.assertLess(second, third)

    def test_every_id_given_after_the_watermark_exceeds_it(self):
        clock = FakeClock()
        ids = TimeOrderedIds(63, clock)
        for step in (0.0, 0.0, 0.000001, 0.00001, 0.5):
            clock.now += step
            mark = ids.watermark()
            self.assertGreater(next(ids), mark)
            self.assertGreater(next(ids), mark)
        other = TimeOrderedIds(0, clock)  # a worker that has kept nothing yet
        mark = other.watermark()
        self.assertGreater(next(other), mark)

    def test_a_clock_set_back_does_not_make_ids_fall(self):
        clock = FakeClock()
        ids = TimeOrderedIds(2, clock)
        high = next(ids)
        clock.now -= 60
        self.assertGreater(next(ids), high)
        self.assertGreaterEqual(ids.watermark(), high)

    def test_a_slot_outside_the_range_is_refused(self):
        for slot in (-1, SLOTS):
            self.assertRaises(ValueError, TimeOrderedIds, slot)

    def test_process_ids_take_the_supervisors_slot(self):
        clock_ids = process_ids({WORKER_SLOT_ENV: "7"})
        self.assertEqual(next(clock_ids) % SLOTS, 7)
        for bad in ({}, {WORKER_SLOT_ENV: "x"}, {WORKER_SLOT_ENV: "64"}):
            self.assertEqual(next(process_ids(bad)) % SLOTS, 0, bad)


class RingsWithTimeIdsTests(SynchronousTestCase):
    """Paging, following and getting work on ids that are not consecutive."""

    def setUp(self):
        self.clock = FakeClock()
        self.ring = LogRing(size=5, clock=self.clock, ids=TimeOrderedIds(3, self.clock))

    def log(self, n):
        for i in range(n):
            self.clock.now += 0.01
            self.ring({"log_format": "line %d" % i, "log_time": self.clock.now})

    def texts(self, lines):
        return [line["text"] for line in lines]

    def test_pages_and_following(self):
        self.log(8)  # the ring keeps the last five
        lines, cursor = self.ring.lines(limit=2)
        self.assertEqual(self.texts(lines), ["line 7", "line 6"])
        lines, cursor = self.ring.lines(before=cursor, limit=2)
        self.assertEqual(self.texts(lines), ["line 5", "line 4"])
        lines, cursor = self.ring.lines(before=cursor, limit=2)
        self.assertEqual(self.texts(lines), ["line 3"])
        self.assertIsNone(cursor)
        mark = self.ring.watermark()
        self.log(2)
        lines, after = self.ring.lines(after=mark)
        self.assertEqual(self.texts(lines), ["line 1", "line 0"])
        self.assertEqual(self.ring.lines(after=after), ([], after))

    def test_get_by_id(self):
        ring = RequestRing(size=3, clock=self.clock, ids=TimeOrderedIds(1, self.clock))
        kept = [ring.record({"path": "/%d" % i}) for i in range(4)]
        self.assertIsNone(ring.get(kept[0]["id"]))  # evicted
        self.assertEqual(ring.get(kept[2]["id"])["path"], "/2")
        self.assertIsNone(ring.get(kept[2]["id"] + 1))
        self.assertIsNone(ring.get("x"))


def item(entry_id):
    return {"id": entry_id}


class World:
    """
    Several rings filling on one clock, each asked for its part in turn
    (time passing and entries coming between the answers), as workers do.
    """

    def __init__(self, rings=3, size=50, seed=0):
        self.random = random.Random(seed)
        self.clock = FakeClock()
        self.rings = [RequestRing(size=size, clock=self.clock, ids=TimeOrderedIds(slot, self.clock))
                      for slot in range(rings)]
        self.kept = []

    def traffic(self, n):
        for _ in range(n):
            self.clock.now += self.random.choice((0.0, 0.000001, 0.00003, 0.001))
            ring = self.random.choice(self.rings)
            self.kept.append(ring.record({"path": "/"})["id"])

    def parts(self, limit, after=None, before=None, between=3):
        parts = []
        for ring in self.rings:
            watermark = ring.watermark()
            items, cursor = ring.list(after=after, before=before, limit=limit)
            complete = len(items) < limit if after is not None else cursor is None
            parts.append(local_part(items, complete, watermark))
            self.traffic(self.random.randrange(between + 1))
        return parts

    def evicted(self):
        """Ids no ring keeps any more."""
        alive = {entry[0] for ring in self.rings for entry in ring._entries}
        return set(self.kept) - alive


class MergeTests(SynchronousTestCase):

    def test_paging_finds_every_entry_once_newest_first(self):
        for seed in range(20):
            world = World(seed=seed, size=1000)
            world.traffic(120)
            world.clock.now += 0.001  # the newest entries are a moment old when asked for
            seen, cursor = [], None
            for _ in range(200):
                items, cursor = merge_newest(world.parts(limit=7, before=cursor, between=0), 7)
                seen.extend(i["id"] for i in items)
                if cursor is None:
                    break
            self.assertEqual(seen, sorted(world.kept, reverse=True), seed)

    def test_a_first_page_shows_nothing_a_follower_would_see_again(self):
        world = World(seed=3)
        world.traffic(30)
        parts = world.parts(limit=10)
        items, _ = merge_newest(parts, 10)
        horizon = min(p["watermark"] for p in parts)
        self.assertTrue(all(i["id"] <= horizon for i in items))

    def test_following_misses_none_and_repeats_none_while_entries_keep_coming(self):
        for seed in range(20):
            world = World(seed=seed, size=1000)
            world.traffic(10)
            after = min(p["watermark"] for p in world.parts(limit=1))
            start = len(world.kept)
            start_after = after
            seen, items = [], []
            for round_ in range(400):
                if round_ < 40:
                    world.traffic(world.random.randrange(12))
                else:
                    world.clock.now += 0.001
                    if seen and seen[-1] == max(world.kept) and not items:
                        break
                parts = world.parts(limit=5, after=after, between=3 if round_ < 40 else 0)
                items, after = merge_following(parts, after, 5)
                ids = [i["id"] for i in items]
                self.assertEqual(ids, sorted(ids, reverse=True))
                seen.extend(reversed(ids))
            else:
                self.fail("never caught up")
            expected = sorted(i for i in world.kept if i > start_after)
            self.assertEqual(seen, expected, seed)
            self.assertGreaterEqual(len(seen), len(world.kept) - start, seed)

    def test_a_part_cut_short_holds_the_merge_back_where_its_entries_may_be_missing(self):
        short = local_part([item(90), item(80)], False, 1000)  # more below 80
        whole = local_part([item(95), item(70), item(60)], True, 1000)
        items, cursor = merge_newest([short, whole], 10)
        self.assertEqual([i["id"] for i in items], [95, 90, 80])
        self.assertEqual(cursor, 80)
        # Following: the short part's entries after 30 stop at 40, more may be newer.
        short = local_part([item(40), item(35)], False, 1000)
        whole = local_part([item(50), item(38)], True, 1000)
        items, after = merge_following([short, whole], 30, 10)
        self.assertEqual([i["id"] for i in items], [40, 38, 35])
        self.assertEqual(after, 40)

    def test_following_with_nothing_new_stays_or_moves_to_the_horizon(self):
        self.assertEqual(merge_following([local_part([], True, 77)], 50, 5), ([], 77))
        self.assertEqual(merge_following([local_part([], True, 40)], 50, 5), ([], 50))
        self.assertEqual(merge_following([], 50, 5), ([], 50))
        self.assertEqual(merge_newest([], 5), ([], None))

    def test_trimmed_parts_stay_exact(self):
        items = [{"id": 100 - i, "text": "x" * 100} for i in range(10)]  # newest first
        part = local_part(items, True, 500)
        self.assertIs(trimmed(part, 10 ** 6, following=False), part)
        older = trimmed(part, 370, following=False)
        self.assertEqual([i["id"] for i in older["items"]], [100, 99, 98])
        self.assertFalse(older["complete"])
        newer = trimmed(part, 370, following=True)
        self.assertEqual([i["id"] for i in newer["items"]], [93, 92, 91])
        self.assertFalse(newer["complete"])
        self.assertEqual(len(trimmed(part, 1, following=True)["items"]), 1)

    def test_valid_part(self):
        self.assertTrue(valid_part(local_part([item(1)], True, 3)))
        for bad in (None, [], {"items": [], "complete": True},
                    {"items": [{"id": "1"}], "complete": True, "watermark": 1},
                    {"items": [1], "complete": True, "watermark": 1},
                    {"items": [], "complete": 1, "watermark": 1},
                    {"items": [], "complete": True, "watermark": True}):
            self.assertFalse(valid_part(bad), bad)


class FakePeers:
    """
    Other workers answering from their own views, possibly with a bad part;
    C{meanwhile()} is called before they answer (what they keep while the
    question travels).
    """

    def __init__(self, views, extra=(), meanwhile=lambda: None):
        self.views = views
        self.extra = list(extra)
        self.asked = []
        self.meanwhile = meanwhile

    def ask(self, what, query):
        self.asked.append((what, query))
        self.meanwhile()
        return defer.succeed([view.answer(what, query) for view in self.views] + self.extra)


class RecentViewTests(SynchronousTestCase):

    def setUp(self):
        self.clock = FakeClock()
        self.views, self.logs, self.requests = [], [], []
        for slot in range(2):
            logs = LogRing(clock=self.clock, ids=TimeOrderedIds(slot, self.clock))
            requests = RequestRing(clock=self.clock, ids=TimeOrderedIds(slot, self.clock))
            self.logs.append(logs)
            self.requests.append(requests)
            self.views.append(RecentView(requests, logs))
        self.view = self.views[0]
        self.view.peers = FakePeers(self.views[1:], extra=[{"bad": True}])

    def result(self, d):
        return self.successResultOf(d)

    def moment(self):
        self.clock.now += 0.001

    def test_logs_of_both_workers_listed_and_followed(self):
        for i in range(4):
            self.clock.now += 0.01
            self.logs[i % 2]({"log_format": "line %d" % i, "log_level": None,
                              "log_time": self.clock.now})
        self.moment()
        lines, cursor, last = self.result(self.view.logs(limit=3))
        self.assertEqual([l["text"] for l in lines], ["line 3", "line 2", "line 1"])
        lines, cursor, _ = self.result(self.view.logs(before=cursor, limit=3))
        self.assertEqual([l["text"] for l in lines], ["line 0"])
        self.assertIsNone(cursor)
        self.clock.now += 0.01
        self.logs[1]({"log_format": "later", "log_time": self.clock.now})
        self.moment()
        lines, next_after, again = self.result(self.view.logs(after=last))
        self.assertEqual([l["text"] for l in lines], ["later"])
        self.assertEqual(next_after, again)
        self.assertEqual(self.result(self.view.logs(after=next_after))[0], [])
        lines, _, _ = self.result(self.view.logs(text="LINE 2"))
        self.assertEqual([l["text"] for l in lines], ["line 2"])

    def test_requests_and_a_request_of_either_worker(self):
        kept = []
        for i in range(3):
            self.clock.now += 0.01
            kept.append(self.requests[i % 2].record({"path": "/%d" % i, "route": "r",
                                                     "status": 200 + 300 * (i == 1)}))
        self.moment()
        items, cursor = self.result(self.view.requests())
        self.assertEqual([r["path"] for r in items], ["/2", "/1", "/0"])
        self.assertIsNone(cursor)
        items, _ = self.result(self.view.requests(status_class="5xx"))
        self.assertEqual([r["path"] for r in items], ["/1"])
        self.assertEqual(self.result(self.view.request(kept[1]["id"]))["path"], "/1")
        self.assertIsNone(self.result(self.view.request(kept[1]["id"] + 1)))
        self.assertEqual(self.view.peers.asked[0][0], "requests")

    def test_alone_it_asks_nobody(self):
        view = RecentView(self.requests[0], self.logs[0])
        self.requests[0].record({"path": "/only"})
        items, _ = self.result(view.requests())
        self.assertEqual([r["path"] for r in items], ["/only"])

    def test_an_unknown_question_is_refused(self):
        self.assertRaises(ValueError, self.view.answer, "secrets", {"limit": 1})

    def test_a_busy_worker_answering_late_still_fills_the_page(self):
        """
        Under load a worker's newest entries, by the time it answers, may all
        be later than the asking worker's part: it is asked for those up to
        the asker's watermark, so the page is full, and exact.
        """
        for i in range(40):
            self.clock.now += 0.001
            self.requests[i % 2].record({"path": "/before/%d" % i})

        def busy():
            for i in range(30):
                self.clock.now += 0.0001
                self.requests[1].record({"path": "/meanwhile/%d" % i})

        self.view.peers.meanwhile = busy
        self.moment()
        items, cursor = self.result(self.view.requests(limit=10))
        self.assertEqual([r["path"] for r in items], ["/before/%d" % i for i in range(39, 29, -1)])
        self.assertIsNotNone(cursor)
        self.assertLess(self.view.peers.asked[-1][1]["before"], self.requests[1].last_id)
        # And the next page goes on where this one stopped, bounded again.
        items, _ = self.result(self.view.requests(before=cursor, limit=10))
        self.assertEqual([r["path"] for r in items], ["/before/%d" % i for i in range(29, 19, -1)])
        # The entries kept meanwhile are not lost: a later listing has them.
        self.view.peers.meanwhile = lambda: None
        self.moment()
        items, _ = self.result(self.view.requests(limit=100))
        self.assertEqual(len([r for r in items if r["path"].startswith("/meanwhile/")]), 60)
        self.assertEqual(len(items), 100)

    def test_an_answer_to_another_worker_is_cut_to_fit_its_pipe(self):
        for i in range(20):
            self.clock.now += 0.001
            self.requests[1].record({"path": "/%d" % i + "x" * 200})
        view = self.views[1]
        view.part_max_bytes = 1000
        part = view.answer("requests", {"limit": 20})
        self.assertLess(len(part["items"]), 20)
        self.assertFalse(part["complete"])
        self.assertEqual(part["items"][0]["path"][:3], "/19")  # the newest kept
        self.moment()
        items, cursor = self.result(self.view.requests(limit=20))
        self.assertEqual(len(items), len(part["items"]))  # exact: nothing below the cut
        self.assertIsNotNone(cursor)
