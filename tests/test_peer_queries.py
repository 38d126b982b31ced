"""Questions between workers: the asking worker, the supervisor passing them on, the answers.

Fakes for the pipes (the supervisor's fake processes of test_cluster, a
StringTransport for a worker's end) on a Clock; the real processes are in
test_admin_live.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from wighaven.observe.stats import GatewayStats
from wighaven.run.cluster import WorkerLink, encode
from wighaven.run.peer_queries import ASK_TIMEOUT, GATHER_TIMEOUT, MAX_PENDING, PeerQueries

from .test_cluster import START, ProcessClock, end, fake_supervisor


class PeerQueriesTests(SynchronousTestCase):
    """A worker's end, with what it sends kept in a list."""

    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.queries = PeerQueries(self.sent.append, self.clock)

    def test_an_answer_is_every_part_told_until_gathered(self):
        d = self.queries.ask("logs", {"limit": 5})
        self.assertEqual(self.sent, [{"ask": {"id": 1, "what": "logs", "query": {"limit": 5}}}])
        self.assertNoResult(d)
        for message in ({"part": {"id": 1, "part": {"items": []}}},
                        {"part": {"id": 1, "part": "not a part"}},
                        {"part": {"id": 9, "part": {"items": ["other question"]}}},
                        {"part": {"id": 1, "part": {"items": [{"id": 3}]}}}):
            self.assertTrue(self.queries.received(message))
        self.assertNoResult(d)
        self.queries.received({"gathered": {"id": 1}})
        self.assertEqual(self.successResultOf(d), [{"items": []}, {"items": [{"id": 3}]}])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_silent_supervisor_ends_the_question_with_what_came(self):
        d = self.queries.ask("logs", {})
        self.queries.received({"part": {"id": 1, "part": {"items": []}}})
        self.clock.advance(ASK_TIMEOUT)
        self.assertEqual(self.successResultOf(d), [{"items": []}])
        self.queries.received({"gathered": {"id": 1}})  # late: nothing happens

    def test_other_messages_are_left_to_the_figures(self):
        for message in ({"others": None, "workers": 2}, None, [1], "x"):
            self.assertFalse(self.queries.received(message))

    def test_another_workers_question_is_answered(self):
        self.queries.answerer = lambda what, query: {"what": what, "limit": query["limit"]}
        self.queries.received({"ask": {"from": 2, "id": 7, "what": "logs", "query": {"limit": 3}}})
        self.assertEqual(self.sent, [{"answer": {"from": 2, "id": 7,
                                                 "part": {"what": "logs", "limit": 3}}}])

    def test_a_question_it_cannot_answer_gets_null(self):
        def refuse(what, query):
            raise ValueError("unknown question")

        self.queries.answerer = refuse
        self.queries.received({"ask": {"from": 0, "id": 1, "what": "x", "query": {}}})
        self.assertEqual(self.sent[-1], {"answer": {"from": 0, "id": 1, "part": None}})
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.queries.answerer = None
        self.queries.received({"ask": {"from": 0, "id": 2, "what": "x", "query": {}}})
        self.assertEqual(self.sent[-1], {"answer": {"from": 0, "id": 2, "part": None}})
        # Malformed questions are not answered at all.
        for ask in (None, {"from": 0, "id": "1", "what": "x", "query": {}},
                    {"from": "0", "id": 1, "what": "x", "query": {}},
                    {"from": 0, "id": 1, "what": "x", "query": []}):
            self.queries.received({"ask": ask})
        self.assertEqual(len(self.sent), 2)

    def test_questions_open_at_once_are_bounded(self):
        for _ in range(MAX_PENDING):
            self.queries.ask("logs", {})
        self.assertEqual(self.successResultOf(self.queries.ask("logs", {})), [])
        self.assertEqual(len(self.sent), MAX_PENDING)

    def test_no_supervisor_to_write_to(self):
        def broken(message):
            raise ConnectionError("gone")

        queries = PeerQueries(broken, self.clock)
        self.assertEqual(self.successResultOf(queries.ask("logs", {})), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_ends_every_question(self):
        d = self.queries.ask("logs", {})
        self.queries.close()
        self.assertEqual(self.successResultOf(d), [])


class SupervisorRelayTests(SynchronousTestCase):
    """The supervisor passes a question to every other live worker and the answers back."""

    def setUp(self):
        self.clock = ProcessClock()
        self.clock.advance(START)
        self.supervisor = fake_supervisor(self.clock, workers=3)
        self.workers = []
        for slot in range(3):
            self.supervisor._spawn(slot)
            self.workers.append(self.supervisor.workers[slot])
        for worker in self.workers:
            worker.transport.written.clear()

    def say(self, worker, message):
        worker.childDataReceived(4, encode(message))

    def told(self, worker):
        return [m for m in worker.transport.messages() if "others" not in m]

    def test_a_question_goes_to_the_others_and_their_parts_come_back(self):
        a, b, c = self.workers
        self.say(a, {"ask": {"id": 5, "what": "logs", "query": {"limit": 2}}})
        question = {"ask": {"from": 0, "id": 5, "what": "logs", "query": {"limit": 2}}}
        self.assertEqual(self.told(b), [question])
        self.assertEqual(self.told(c), [question])
        self.assertEqual(self.told(a), [])
        self.say(b, {"answer": {"from": 0, "id": 5, "part": {"items": [1]}}})
        self.say(b, {"answer": {"from": 0, "id": 5, "part": {"items": ["twice"]}}})
        self.say(a, {"answer": {"from": 0, "id": 5, "part": {"items": ["not asked"]}}})
        self.assertEqual(self.told(a), [{"part": {"id": 5, "part": {"items": [1]}}}])
        self.say(c, {"answer": {"from": 0, "id": 5, "part": None}})
        self.assertEqual(self.told(a)[1:], [{"gathered": {"id": 5}}])
        self.assertEqual(self.supervisor._gathers, {})
        self.assertEqual([call for call in self.clock.getDelayedCalls()
                          if call.func == self.supervisor._gathered], [])

    def test_a_worker_that_does_not_answer_is_left_out_after_the_timeout(self):
        a, b, c = self.workers
        self.say(a, {"ask": {"id": 1, "what": "logs", "query": {}}})
        self.say(b, {"answer": {"from": 0, "id": 1, "part": {"items": []}}})
        self.clock.advance(GATHER_TIMEOUT)
        self.assertEqual(self.told(a), [{"part": {"id": 1, "part": {"items": []}}},
                                        {"gathered": {"id": 1}}])
        self.say(c, {"answer": {"from": 0, "id": 1, "part": {"items": ["late"]}}})
        self.assertEqual(len(self.told(a)), 2)

    def test_a_worker_that_dies_is_not_waited_for(self):
        a, b, c = self.workers
        self.say(a, {"ask": {"id": 1, "what": "logs", "query": {}}})
        self.say(b, {"answer": {"from": 0, "id": 1, "part": None}})
        end(c, signal_name="KILL")
        self.assertEqual(self.told(a), [{"gathered": {"id": 1}}])
        # An asker that dies: its question is dropped.
        self.say(b, {"ask": {"id": 2, "what": "logs", "query": {}}})
        end(b, signal_name="KILL")
        self.assertEqual(self.supervisor._gathers, {})

    def test_alone_or_asking_twice_is_gathered_at_once(self):
        a, b, c = self.workers
        end(b)
        end(c)
        self.say(a, {"ask": {"id": 3, "what": "logs", "query": {}}})
        self.assertEqual(self.told(a), [{"gathered": {"id": 3}}])

    def test_malformed_questions_and_answers_are_dropped(self):
        a, b, c = self.workers
        for ask in (None, {"id": "1", "what": "logs", "query": {}}, {"id": 1, "what": 2, "query": {}},
                    {"id": 1, "what": "logs"}):
            self.say(a, {"ask": ask})
        self.say(a, {"answer": "nonsense"})
        self.say(a, {"answer": {"from": "0", "id": 1}})
        self.assertEqual(self.told(a) + self.told(b) + self.told(c), [])
        self.assertEqual(self.supervisor._gathers, {})


class WorkerLinkQueriesTests(SynchronousTestCase):
    """A worker's link hands questions and answers to its queries, figures to its peers."""

    def setUp(self):
        self.clock = Clock()
        self.stats = GatewayStats(self.clock)
        self.link = WorkerLink(self.stats, self.clock, lambda: None)
        self.transport = StringTransport()

    def written(self):
        return [json.loads(line) for line in self.transport.value().splitlines()]

    def test_questions_go_out_on_the_report_pipe_and_answers_come_back(self):
        d = self.link.queries.ask("logs", {"limit": 1})  # before the pipe exists: alone
        self.assertEqual(self.successResultOf(d), [])
        self.link.makeConnection(self.transport)
        d = self.link.queries.ask("logs", {"limit": 1})
        self.assertIn({"ask": {"id": 2, "what": "logs", "query": {"limit": 1}}}, self.written())
        self.link.dataReceived(encode({"part": {"id": 2, "part": {"items": []}}})
                               + encode({"others": None, "started": 1.0, "workers": 3})
                               + encode({"gathered": {"id": 2}}))
        self.assertEqual(self.successResultOf(d), [{"items": []}])
        self.assertEqual(self.stats.peers.workers, 3)

    def test_the_parent_gone_ends_open_questions(self):
        self.link.makeConnection(self.transport)
        d = self.link.queries.ask("logs", {})
        self.link.connectionLost(Failure(Exception("stdin closed")))
        self.assertEqual(self.successResultOf(d), [])
