"""Tests for WORKERS above 1 (L{wighaven.run.cluster}, L{wighaven.run.worker}): the
supervising parent, its workers and how their figures are added up.

Unit tests drive the parent's bookkeeping with task.Clock and fake worker
processes (nothing is spawned): the report framing, the one listening
socket, what each worker is told of the others (and how much merging and
writing that takes), the figures of dead workers, the restart back-off,
hung workers, and how a worker's pages (L{wighaven.observe.stats.GatewayStats},
L{wighaven.observe.live.LiveMessages}) add the others' figures to its own.

Integration tests run the real thing: `twistd -n wighaven --workers 2` in
front of the real TLS test backend, its worker processes found under
/proc, killed, stopped, restarted and drained, and a second gateway on
its port.
"""

import errno
import glob
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, protocol
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from wighaven.run import cluster
from wighaven.run.cluster import (
    FIRST_REPORT_WITHIN,
    HUNG_AFTER,
    LISTEN_FD,
    MAX_LINE,
    REPORT_FD,
    REPORT_INTERVAL,
    RESTART_DELAY_MAX,
    PeerFigures,
    Supervisor,
    WorkerLink,
    _Lines,
    encode,
    everyone_but,
    first_message,
    listening_socket,
)
from wighaven.config.settings import load_config
from wighaven.observe.live import LiveMessages
from wighaven.observe.metrics import RouteMetrics
from wighaven.observe.stats import GatewayStats
from wighaven.proxy.transport import adopt_port

from .support.backend import start_backend
from .support.gateway import ROOT, TOKEN, GatewayProcess

START = 1000.0


def finish(route, path="/", status=200, total=0.05, method=b"GET"):
    """One whole request through C{route}, as the site counts it."""
    route.request_started()
    route.request_ended(method, status, total, 0.01, 10, 100, path=path)


def report(route, src=None):
    """C{route}'s figures as a worker reports them (L{WorkerLink.report})."""
    now = route._clock.seconds()
    snapshot = route.snapshot(now)
    if src is not None:
        for entry in snapshot["recent"]:
            entry["src"] = src
    return {"time": now, "routes": {route.name: snapshot}}


def total(route_figures):
    return sum(n for classes in route_figures["requests"].values() for n in classes.values())


# Fakes for the parent's side: a reactor that "spawns" without a process.


class FakeProcess:
    """The transport of one fake worker process."""

    def __init__(self, pid):
        self.pid = pid
        self.written = []
        self.signals = []

    def writeToChild(self, fd, data):
        self.written.append((fd, data))

    def signalProcess(self, name):
        self.signals.append(name)

    def messages(self):
        """What the parent wrote to this worker's stdin, decoded."""
        data = b"".join(d for fd, d in self.written if fd == 0)
        return [json.loads(line) for line in data.splitlines()]


class ProcessClock(Clock):
    """A Clock whose spawnProcess records the call and connects a L{FakeProcess}."""

    def __init__(self):
        super().__init__()
        self.spawned = []
        self._pids = itertools.count(4000)

    def spawnProcess(self, protocol, executable, args=(), env=None, path=None, uid=None,
                     gid=None, usePTY=False, childFDs=None):
        transport = FakeProcess(next(self._pids))
        self.spawned.append(
            {"protocol": protocol, "executable": executable, "args": args, "env": env,
             "childFDs": childFDs}
        )
        protocol.makeConnection(transport)
        return transport


class FakeSocket:
    def __init__(self, fd):
        self.fd = fd
        self.closed = False

    def fileno(self):
        return self.fd

    def close(self):
        self.closed = True


def cluster_config(**settings):
    values = {"PRIVATE_BACKEND_URL": "https://user-space.hf.space", "WORKERS": "2",
              "INTERFACE": "127.0.0.1", "PORT": "0"}
    values.update(settings)
    return load_config(values)


def fake_supervisor(clock, workers=2):
    """A Supervisor on C{clock}, with a fake socket, spawning nothing real."""
    supervisor = Supervisor(cluster_config(WORKERS=str(workers)), clock, {"HOME": "/x"})
    supervisor._socket = FakeSocket(100)
    return supervisor


def end(worker, signal_name=None, code=None):
    """The fake worker process ends (killed by C{signal_name}, or exits with C{code})."""
    worker.transport.pid = None
    if signal_name is not None:
        reason = ProcessTerminated(signal=getattr(signal, "SIG" + signal_name))
    elif code:
        reason = ProcessTerminated(exitCode=code)
    else:
        reason = ProcessDone(0)
    worker.processEnded(Failure(reason))


def delays(clock):
    return sorted(call.getTime() - clock.seconds() for call in clock.getDelayedCalls())


class LinesTests(SynchronousTestCase):
    """The newline-delimited JSON framing of reports and answers."""

    def setUp(self):
        self.got = []
        self.lines = _Lines(self.got.append)

    def test_one_line_split_across_feeds(self):
        self.lines.feed(b'{"a": ')
        self.lines.feed(b"[1, 2")
        self.assertEqual(self.got, [])
        self.lines.feed(b"]}\n")
        self.assertEqual(self.got, [{"a": [1, 2]}])

    def test_several_lines_in_one_feed(self):
        self.lines.feed(b'{"a": 1}\n{"b": 2}\n\n  \n{"c"')
        self.assertEqual(self.got, [{"a": 1}, {"b": 2}])  # blank lines skipped
        self.lines.feed(b": 3}\n")
        self.assertEqual(self.got, [{"a": 1}, {"b": 2}, {"c": 3}])

    def test_oversize_line_refused(self):
        self.lines.feed(b"x" * 1000)
        with self.assertRaises(ValueError):
            self.lines.feed(b"y" * MAX_LINE)
        self.assertEqual(self.got, [])

    def test_bad_json_raises_value_error(self):
        with self.assertRaises(ValueError):
            self.lines.feed(b"not json\n")

    def test_encode(self):
        data = encode({"snapshot": {"time": 1.5, "routes": {}}, "n": [1, 2]})
        self.assertEqual(data, b'{"snapshot":{"time":1.5,"routes":{}},"n":[1,2]}\n')
        self.assertEqual(data.count(b"\n"), 1)
        self.lines.feed(data + encode("é"))
        self.assertEqual(self.got, [{"snapshot": {"time": 1.5, "routes": {}}, "n": [1, 2]}, "é"])


def plain_listener(reuse_port=False):
    """A listening socket on a free port, as some other program would hold it."""
    sock = socket.socket()
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


class ListeningSocketTests(SynchronousTestCase):
    """The one listening socket every worker accepts from."""

    def test_listening_on_the_chosen_port(self):
        sock = listening_socket("127.0.0.1", 0, 16)
        self.addCleanup(sock.close)
        host, port = sock.getsockname()
        self.assertEqual(host, "127.0.0.1")
        self.assertNotEqual(port, 0)
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), 1)
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 0)
        self.assertFalse(sock.getblocking())
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    def assertRefused(self, port):
        """No socket on C{port}: EADDRINUSE, and the socket it made is closed."""
        opened = []
        real = socket.socket

        def recording(*args, **kwargs):
            sock = real(*args, **kwargs)
            opened.append(sock)
            return sock

        self.patch(socket, "socket", recording)
        with self.assertRaises(OSError) as caught:
            listening_socket("127.0.0.1", port, 16)
        self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
        self.assertEqual([s.fileno() for s in opened], [-1])

    def test_a_plain_listener_keeps_its_port(self):
        with plain_listener() as taken:
            self.assertRefused(taken.getsockname()[1])

    def test_a_reuse_port_listener_keeps_its_port(self):
        """Even one that would share (SO_REUSEPORT, same user): no silent sharing."""
        with plain_listener(reuse_port=True) as taken:
            self.assertRefused(taken.getsockname()[1])

    def test_a_second_gateway_keeps_off_the_port(self):
        first = listening_socket("127.0.0.1", 0, 16)
        self.addCleanup(first.close)
        self.assertRefused(first.getsockname()[1])


class _Kept(protocol.Protocol):
    """An accepted connection, kept by its factory, with a Deferred for its end."""

    def connectionMade(self):
        self.lost = defer.Deferred()
        self.factory.accepted.append(self)

    def connectionLost(self, reason):
        self.lost.callback(None)


class SharedPortTests(unittest.TestCase):
    """A worker takes one connection per wake-up from the shared socket."""

    def close_all(self, accepted):
        for connection in accepted:
            connection.transport.loseConnection()
        return defer.gatherResults([connection.lost for connection in accepted])

    def test_one_connection_per_wake_up(self):
        """
        Twisted's port would take all three queued connections at once (and
        up to 100 of a burst), leaving none for the other workers.
        """
        from twisted.internet import reactor

        listener = listening_socket("127.0.0.1", 0, 16)
        factory = protocol.Factory.forProtocol(_Kept)
        factory.accepted = []
        try:
            port = adopt_port(reactor, listener.fileno(), socket.AF_INET, factory)
        finally:
            listener.close()  # the port holds its own copy
        self.addCleanup(port.stopListening)
        self.addCleanup(self.close_all, factory.accepted)
        for _ in range(3):
            client = socket.create_connection(port.socket.getsockname(), timeout=2)
            self.addCleanup(client.close)
        port.doRead()  # a wake-up, as the reactor would call it
        self.assertEqual(len(factory.accepted), 1)
        port.doRead()
        port.doRead()
        self.assertEqual(len(factory.accepted), 3)


class SupervisorTests(SynchronousTestCase):
    """The parent's bookkeeping, with fake worker processes on a Clock."""

    def setUp(self):
        self.clock = ProcessClock()
        self.clock.advance(START)
        self.supervisor = fake_supervisor(self.clock, workers=3)
        # What the workers count, each on its own route.
        self.routes = [RouteMetrics("backend", self.clock) for _ in range(3)]

    def worker(self, slot):
        """Spawn the worker of C{slot} (as a restart would)."""
        self.supervisor._spawn(slot)
        return self.supervisor.workers[slot]

    def test_spawn(self):
        worker = self.worker(1)
        call = self.clock.spawned[-1]
        self.assertIs(call["protocol"], worker)
        self.assertEqual(worker.slot, 1)
        self.assertEqual(worker.started_at, START)
        self.assertEqual(call["args"], [sys.executable, "-m", "wighaven.run.worker"])
        self.assertEqual(call["executable"], sys.executable)
        # The workers load the same configuration, as single processes, and
        # each is told its slot (its recent entries' ids carry it).
        self.assertEqual(call["env"], {"HOME": "/x", "WORKERS": "1", "WIGHAVEN_WORKER_SLOT": "1"})
        # Every worker gets the one socket.
        self.assertEqual(
            call["childFDs"], {0: "w", 1: 1, 2: 2, LISTEN_FD: 100, REPORT_FD: "r"}
        )
        self.worker(0)
        self.assertEqual(self.clock.spawned[-1]["childFDs"][LISTEN_FD], 100)

    def test_told_of_the_others_at_spawn(self):
        """A new worker's stdin holds the others' figures before it serves anything."""
        a = self.worker(0)
        self.assertEqual(a.transport.messages(),
                         [{"others": None, "started": START, "workers": 1}])
        finish(self.routes[0], "/a")
        a.snapshot = report(self.routes[0], src=a.pid)
        end(a, signal_name="KILL")
        b = self.worker(1)
        [told] = b.transport.messages()
        self.assertEqual(total(told["others"]["routes"]["backend"]), 1)  # a's, retired
        self.assertEqual(told["workers"], 1)

    def test_others_exclude_the_worker_itself(self):
        a, b, _ = self.worker(0), self.worker(1), self.worker(2)  # the third never reports
        finish(self.routes[0], "/a")
        for _ in range(2):
            finish(self.routes[1], "/b")
        a.snapshot = report(self.routes[0], src=a.pid)
        b.snapshot = report(self.routes[1], src=b.pid)
        # c has not reported yet.
        told = self.supervisor.peer_messages()
        self.assertEqual(total(told[0]["others"]["routes"]["backend"]), 2)
        self.assertEqual(total(told[1]["others"]["routes"]["backend"]), 1)
        self.assertEqual(total(told[2]["others"]["routes"]["backend"]), 3)
        self.assertEqual({e["src"] for e in told[0]["others"]["routes"]["backend"]["recent"]},
                         {b.pid})
        for message in told.values():
            self.assertEqual(message["started"], self.supervisor.started)
            self.assertEqual(message["workers"], 3)
        json.dumps(told)

    def test_nobody_else(self):
        a = self.worker(0)
        a.snapshot = report(self.routes[0])
        self.assertEqual(
            self.supervisor.peer_messages(),
            {0: {"others": None, "started": START, "workers": 1}},
        )

    def test_report_is_answered_on_stdin_at_the_tick(self):
        a, b = self.worker(0), self.worker(1)
        finish(self.routes[1], "/b")
        b.childDataReceived(REPORT_FD, encode({"snapshot": report(self.routes[1], src=b.pid)}))
        # a's report, in two pieces.
        data = encode({"snapshot": report(self.routes[0], src=a.pid)})
        a.childDataReceived(REPORT_FD, data[:10])
        a.childDataReceived(REPORT_FD, data[10:])
        self.assertEqual([len(w.transport.messages()) for w in (a, b)], [1, 1])  # at spawn
        self.supervisor.tick()
        self.assertEqual(total(b.transport.messages()[-1]["others"]["routes"]["backend"]), 0)
        answer = a.transport.messages()[-1]  # a hears of b's request
        self.assertEqual(total(answer["others"]["routes"]["backend"]), 1)
        self.assertEqual(answer["workers"], 2)

    def test_unreadable_report_dropped(self):
        a = self.worker(0)
        a.childDataReceived(REPORT_FD, b"not json\n")
        a.childDataReceived(REPORT_FD, encode({"snapshot": {"no": "routes"}}))
        a.childDataReceived(REPORT_FD, encode(["a list"]))
        a.childDataReceived(1, encode({"snapshot": report(self.routes[0])}))  # not REPORT_FD
        self.assertIsNone(a.snapshot)
        self.supervisor.tick()
        self.assertEqual(len(a.transport.messages()), 1)  # the one at spawn, no answer
        # The next good report is read as usual.
        a.childDataReceived(REPORT_FD, encode({"snapshot": report(self.routes[0])}))
        self.assertIsNotNone(a.snapshot)
        self.supervisor.tick()
        self.assertEqual(len(a.transport.messages()), 2)

    def test_dead_workers_counters_are_retired(self):
        a, b = self.worker(0), self.worker(1)
        route = self.routes[0]
        for status in (200, 200, 502):
            finish(route, "/a", status=status)
        route.request_started()  # one in flight...
        route.websocket_opened()  # ...one WebSocket and one stream open
        route.stream_opened()
        a.snapshot = report(route, src=a.pid)
        finish(self.routes[1], "/b")
        b.snapshot = report(self.routes[1], src=b.pid)

        end(a, signal_name="KILL")
        self.assertIsNone(self.supervisor.workers[0])
        retired = self.supervisor.retired["routes"]["backend"]
        self.assertEqual(total(retired), 3)
        self.assertEqual(retired["errors"], 1)
        self.assertEqual(retired["bytes_out"], 300)
        self.assertEqual(retired["total_latency"]["count"], 3)
        for gauge in ("in_flight", "open_websockets", "open_streams"):
            self.assertEqual(retired[gauge], 0, gauge)
        # Its last minute moves on without it: no error ratio for ever.
        self.assertEqual(retired["last_minute"]["requests"], 0)
        self.assertEqual(retired["last_minute"]["errors"], 0)
        self.assertEqual(retired["last_minute"]["latency"]["count"], 0)

        told = self.supervisor.peer_messages()[b.slot]
        others = told["others"]["routes"]["backend"]
        self.assertEqual(total(others), 3)
        self.assertEqual(others["in_flight"], 0)
        self.assertEqual(told["workers"], 1)

        # The replacement counts from zero; the dead one's part stays.
        self.clock.advance(1.0)
        a2 = self.supervisor.workers[0]
        self.assertIsNot(a2, a)
        self.assertIsNot(a2, None)
        fresh = RouteMetrics("backend", self.clock)
        finish(fresh, "/a2")
        fresh.request_started()
        a2.snapshot = report(fresh, src=a2.pid)
        told = self.supervisor.peer_messages()
        others = told[b.slot]["others"]["routes"]["backend"]
        self.assertEqual(total(others), 4)
        self.assertEqual(others["in_flight"], 1)
        self.assertEqual(told[b.slot]["workers"], 2)
        # b is told of a2 and the retired figures, a2 of b and the retired ones.
        self.assertEqual(total(told[a2.slot]["others"]["routes"]["backend"]), 4)

        # A second death adds to the retired figures.
        end(a2, code=1)
        self.assertEqual(total(self.supervisor.retired["routes"]["backend"]), 4)
        self.assertEqual(self.supervisor.retired["routes"]["backend"]["in_flight"], 0)

    def test_worker_dead_before_its_first_report(self):
        a, b = self.worker(0), self.worker(1)
        end(a, code=1)
        self.assertIsNone(self.supervisor.retired)
        self.assertIsNone(self.supervisor.peer_messages()[b.slot]["others"])

    def test_restart_delay_doubles_while_dying_young(self):
        self.worker(0)
        seen = []
        for _ in range(8):
            self.clock.advance(0.5)  # dies young
            end(self.supervisor.workers[0], signal_name="KILL")
            [delay] = delays(self.clock)
            seen.append(delay)
            self.clock.advance(delay)
            self.assertIsNotNone(self.supervisor.workers[0])
        self.assertEqual(seen, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0])
        self.assertEqual(RESTART_DELAY_MAX, 30.0)
        self.assertEqual(self.supervisor.restarts, 8)
        self.assertEqual(len(self.clock.spawned), 9)

    def test_restart_delay_back_to_one_second_after_a_long_life(self):
        self.worker(0)
        for _ in range(3):
            self.clock.advance(0.5)
            end(self.supervisor.workers[0], code=1)
            self.clock.advance(delays(self.clock)[0])
        self.clock.advance(60)  # this one lived a minute
        end(self.supervisor.workers[0], code=1)
        self.assertEqual(delays(self.clock), [1.0])

    def test_slots_back_off_apart(self):
        self.worker(0)
        self.worker(1)
        self.clock.advance(0.5)
        end(self.supervisor.workers[0], code=1)
        self.clock.advance(1.0)
        end(self.supervisor.workers[0], code=1)
        end(self.supervisor.workers[1], code=1)
        self.assertEqual(delays(self.clock), [1.0, 2.0])

    def test_no_restart_while_stopping(self):
        a, b = self.worker(0), self.worker(1)
        d = self.supervisor.drain()
        self.assertTrue(self.supervisor.stopping)
        self.assertEqual(a.transport.signals, ["TERM"])
        self.assertEqual(b.transport.signals, ["TERM"])
        end(a)
        self.assertNoResult(d)
        end(b)
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.supervisor.restarts, 0)
        self.supervisor._spawn(0)  # a restart scheduled earlier does nothing now
        self.assertEqual(len(self.clock.spawned), 2)

    def test_drain_closes_the_socket(self):
        sock = self.supervisor._socket
        self.worker(0)
        self.supervisor.drain()
        self.assertTrue(sock.closed)
        self.assertIsNone(self.supervisor._socket)

    def test_restart_scheduled_before_drain_does_not_spawn(self):
        self.worker(0)
        self.worker(1)
        end(self.supervisor.workers[0], code=1)
        self.supervisor.drain()
        self.clock.advance(60)
        self.assertEqual(len(self.clock.spawned), 2)


def reports(worker, route):
    """C{worker} reports C{route}'s figures, as its L{WorkerLink} does."""
    worker.childDataReceived(REPORT_FD, encode({"snapshot": report(route, src=worker.pid)}))


class EveryoneButTests(SynchronousTestCase):
    """The others' figures for every worker at once, in linear work."""

    def setUp(self):
        clock = Clock()
        clock.advance(START)
        self.routes = [RouteMetrics("backend", clock) for _ in range(5)]
        for i, route in enumerate(self.routes):
            for _ in range(i + 1):
                finish(route, "/%d" % i)
        self.snapshots = [report(route, src=i) for i, route in enumerate(self.routes)]

    def test_each_gets_the_sum_of_the_others_and_the_base(self):
        snapshots = list(self.snapshots)
        snapshots[2] = None  # has not reported yet
        base, snapshots = snapshots[0], snapshots[1:]  # the retired figures
        others = everyone_but(snapshots, base)
        self.assertEqual([total(o["routes"]["backend"]) for o in others],
                         [1 + 4 + 5, 1 + 2 + 4 + 5, 1 + 2 + 5, 1 + 2 + 4])
        # Exact: the same as merging the others one by one.
        from wighaven.observe.metrics import merge_snapshots

        expected = merge_snapshots([base, self.snapshots[1], self.snapshots[3]])
        self.assertEqual(json.dumps(others[3], sort_keys=True),
                         json.dumps(expected, sort_keys=True))
        self.assertEqual({e["src"] for e in others[1]["routes"]["backend"]["recent"]}, {0, 1, 3, 4})

    def test_nothing_to_tell(self):
        self.assertEqual(everyone_but([]), [])
        self.assertEqual(everyone_but([None, None]), [None, None])
        self.assertEqual(everyone_but([self.snapshots[0]]), [None])
        self.assertEqual(everyone_but([None], self.snapshots[1]), [self.snapshots[1]])


class SupervisorTickTests(SynchronousTestCase):
    """Once a second: one merge of everything, bounded answers, hung workers killed."""

    def supervisor(self, workers):
        clock = ProcessClock()
        clock.advance(START)
        supervisor = fake_supervisor(clock, workers)
        for slot in range(workers):
            supervisor._spawn(slot, tell=False)
        return clock, supervisor

    def counted_merges(self, workers):
        """How many snapshots one round of reports and answers merges."""
        clock, supervisor = self.supervisor(workers)
        routes = [RouteMetrics("backend", clock) for _ in range(workers)]
        merged = []
        real = cluster.merge_snapshots

        def counting(snapshots):
            snapshots = list(snapshots)
            merged.append(len(snapshots))
            return real(snapshots)

        self.patch(cluster, "merge_snapshots", counting)
        for worker, route in zip(supervisor.workers, routes):
            finish(route)
            reports(worker, route)
        clock.advance(REPORT_INTERVAL)
        supervisor.tick()
        for worker in supervisor.workers:  # everyone told, of everyone else
            told = worker.transport.messages()[-1]
            self.assertEqual(total(told["others"]["routes"]["backend"]), workers - 1)
        return sum(merged)

    def test_merges_grow_linearly_with_the_workers(self):
        few, many = self.counted_merges(8), self.counted_merges(32)
        # Six per worker (before, after, and the two joined, pairwise): 40
        # and 184, where a merge of all the others for each would be 16 times.
        self.assertLess(many / few, 6, (few, many))
        self.assertLessEqual(many, 32 * 6)

    def test_at_most_one_answer_per_report(self):
        clock, supervisor = self.supervisor(2)
        a, b = supervisor.workers
        route = RouteMetrics("backend", clock)
        for _ in range(5):  # five reports before a tick: two answers owed, at most
            reports(a, route)
        reports(b, route)
        for _ in range(10):
            supervisor.tick()
        self.assertEqual([len(w.transport.messages()) for w in (a, b)], [2, 1])
        # One more report, one more answer.
        reports(b, route)
        supervisor.tick()
        supervisor.tick()
        self.assertEqual([len(w.transport.messages()) for w in (a, b)], [2, 2])

    def test_a_worker_that_does_not_report_is_told_nothing(self):
        clock, supervisor = self.supervisor(2)
        a, b = supervisor.workers
        route = RouteMetrics("backend", clock)
        for _ in range(4):
            reports(a, route)
            supervisor.tick()
        self.assertEqual([len(w.transport.messages()) for w in (a, b)], [4, 0])

    def test_a_silent_worker_is_killed_and_restarted(self):
        clock, supervisor = self.supervisor(2)
        a, b = supervisor.workers
        route = RouteMetrics("backend", clock)
        supervisor._ticks.start(REPORT_INTERVAL, now=False)
        self.addCleanup(supervisor._stop_ticking, None)
        reports(b, route)
        for _ in range(int(HUNG_AFTER)):  # b keeps quiet: not yet hung
            reports(a, route)
            clock.advance(REPORT_INTERVAL)
        self.assertEqual((a.transport.signals, b.transport.signals), ([], []))
        reports(a, route)
        with capturedLogs() as events:
            clock.advance(REPORT_INTERVAL)
        self.assertEqual((a.transport.signals, b.transport.signals), ([], ["KILL"]))
        self.assertEqual(
            [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn],
            ["worker 1 (pid %d) silent for %ds: killed, to be restarted" % (b.pid, HUNG_AFTER + 1)],
        )
        reports(a, route)
        clock.advance(REPORT_INTERVAL)
        self.assertEqual(b.transport.signals, ["KILL"])  # once
        end(b, signal_name="KILL")
        clock.advance(1.0)  # the usual restart
        fresh = supervisor.workers[1]
        self.assertIsNot(fresh, b)
        self.assertEqual(len(clock.spawned), 3)
        # A new worker has longer to start; then it is watched as the others.
        for _ in range(int(FIRST_REPORT_WITHIN / REPORT_INTERVAL)):
            reports(a, route)
            clock.advance(REPORT_INTERVAL)
        self.assertEqual(fresh.transport.signals, [])
        reports(a, route)
        clock.advance(REPORT_INTERVAL)
        self.assertEqual(fresh.transport.signals, ["KILL"])
        self.assertEqual(a.transport.signals, [])

    def test_a_parent_that_was_stopped_kills_nobody(self):
        """Ctrl-Z stops every process: silence is counted in the parent's ticks."""
        clock, supervisor = self.supervisor(2)
        supervisor._ticks.start(REPORT_INTERVAL, now=False)
        self.addCleanup(supervisor._stop_ticking, None)
        route = RouteMetrics("backend", clock)
        for worker in supervisor.workers:
            reports(worker, route)
        clock.advance(600)
        for worker in supervisor.workers:
            self.assertEqual(worker.transport.signals, [])


class SupervisorServiceTests(SynchronousTestCase):
    """startService binds real sockets and spawns (fake) workers on them."""

    def test_start_spawns_the_workers_on_one_socket(self):
        clock = ProcessClock()
        supervisor = Supervisor(cluster_config(WORKERS="2"), clock, {"X": "1", "WORKERS": "2"})
        supervisor.startService()
        sock = supervisor._socket
        self.addCleanup(sock.close)
        port = supervisor.port
        self.assertGreater(port, 0)
        self.assertEqual(sock.getsockname()[1], port)
        self.assertEqual(len(clock.spawned), 2)
        self.assertEqual(
            [call["childFDs"][LISTEN_FD] for call in clock.spawned], [sock.fileno()] * 2
        )
        self.assertEqual([call["env"]["WORKERS"] for call in clock.spawned], ["1", "1"])
        self.assertEqual([w.slot for w in supervisor.workers], [0, 1])
        # The ticks run from the start, and stop once the drain is over.
        self.assertEqual(delays(clock), [REPORT_INTERVAL])
        done = supervisor.drain()
        for worker in supervisor.workers:
            end(worker)
        self.successResultOf(done)
        self.assertEqual(delays(clock), [])


class FirstMessageTests(SynchronousTestCase):
    """A worker reads its parent's first message before serving anything."""

    def pipe(self):
        r, w = os.pipe()
        self.addCleanup(lambda: [_close(fd) for fd in (r, w)])
        return r, w

    def test_reads_up_to_the_end_of_the_first_line(self):
        r, w = self.pipe()
        os.write(w, b'{"workers": 2}\n{"workers"')
        data = first_message(r, timeout=5)
        self.assertEqual(data, b'{"workers": 2}\n{"workers"')

    def test_a_line_longer_than_one_read(self):
        import threading

        r, w = self.pipe()
        line = encode({"pad": "x" * 300000})
        writer = threading.Thread(target=os.write, args=(w, line))
        writer.start()
        self.addCleanup(writer.join)
        self.assertEqual(first_message(r, timeout=10), line)

    def test_parent_gone(self):
        r, w = self.pipe()
        os.write(w, b'{"work')
        os.close(w)
        self.assertEqual(first_message(r, timeout=5), b'{"work')

    def test_nothing_comes(self):
        r, w = self.pipe()
        started = time.monotonic()
        self.assertEqual(first_message(r, timeout=0.1), b"")
        self.assertLess(time.monotonic() - started, 2.0)

    def test_fed_to_the_link(self):
        clock = Clock()
        stats = GatewayStats(clock)
        link = WorkerLink(stats, clock, lambda: None)
        r, w = self.pipe()
        message = encode({"others": None, "started": -5.0, "workers": 2})
        os.write(w, message[:-1])
        os.write(w, message[-1:])
        link.dataReceived(first_message(r, timeout=5))
        self.assertEqual((stats.peers.workers, stats.gateway_started), (2, -5.0))


def _close(fd):
    try:
        os.close(fd)
    except OSError:
        pass


class PeerFiguresTests(SynchronousTestCase):
    def setUp(self):
        clock = Clock()
        clock.advance(START)
        route = RouteMetrics("backend", clock)
        finish(route)
        self.others = report(route, src=7)
        self.peers = PeerFigures()

    def test_empty(self):
        self.assertIsNone(self.peers.snapshot())
        self.assertIsNone(self.peers.started)
        self.assertEqual(self.peers.workers, 1)

    def test_update(self):
        self.peers.update({"others": self.others, "started": 900, "workers": 3})
        self.assertEqual(self.peers.snapshot(), self.others)
        self.assertEqual(self.peers.started, 900.0)
        self.assertEqual(self.peers.workers, 3)

    def test_malformed_messages_ignored(self):
        self.peers.update({"others": self.others, "started": 900.5, "workers": 2})
        for message in (None, "x", 3, [self.others], ["others"]):
            self.peers.update(message)
        self.assertEqual(self.peers.snapshot(), self.others)
        self.assertEqual(self.peers.started, 900.5)
        self.assertEqual(self.peers.workers, 2)

    def test_malformed_fields_read_as_absent(self):
        self.peers.update({"others": self.others, "started": 900.5, "workers": 2})
        self.peers.update({"others": "lots", "started": "long ago", "workers": "2"})
        self.assertIsNone(self.peers.snapshot())
        self.assertIsNone(self.peers.started)
        self.assertEqual(self.peers.workers, 1)
        for workers in (0, -2, 1.5, None):
            self.peers.update({"workers": workers})
            self.assertEqual(self.peers.workers, 1, workers)


class WorkerLinkTests(SynchronousTestCase):
    """A worker's end: a report a second on REPORT_FD, answers on stdin."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        self.stats = GatewayStats(self.clock)
        self.gone = []
        self.link = WorkerLink(self.stats, self.clock, lambda: self.gone.append(True))
        self.transport = StringTransport()

    def reports(self):
        return [json.loads(line) for line in self.transport.value().splitlines()]

    def test_reports_once_a_second(self):
        finish(self.stats.route, "/x")
        self.link.makeConnection(self.transport)
        self.assertEqual(len(self.reports()), 1)
        self.clock.advance(1.0)
        finish(self.stats.route, "/y")
        self.clock.advance(1.0)
        reports = self.reports()
        self.assertEqual(len(reports), 3)
        last = reports[-1]["snapshot"]
        self.assertEqual(last["time"], START + 2)
        route = last["routes"]["backend"]
        self.assertEqual(total(route), 2)
        self.assertEqual([(e["path"], e["n"], e["src"]) for e in route["recent"]],
                         [("/x", 1, os.getpid()), ("/y", 2, os.getpid())])

    def test_answers_kept_as_peers(self):
        self.link.makeConnection(self.transport)
        self.assertIsInstance(self.stats.peers, PeerFigures)
        other = RouteMetrics("backend", self.clock)
        for _ in range(4):
            finish(other)
        data = encode({"others": report(other, src=1), "started": START - 5, "workers": 2})
        self.link.dataReceived(data[:7])
        self.link.dataReceived(data[7:])
        snap = self.stats.snapshot()
        self.assertEqual(snap.requests, 4)
        self.assertEqual(snap.workers, 2)
        self.assertEqual(snap.uptime_seconds, 5.0)

    def test_garbage_from_the_parent_is_dropped(self):
        self.link.makeConnection(self.transport)
        self.link.dataReceived(b"{not json\n")
        self.link.dataReceived(b"x" * (MAX_LINE + 1))
        self.assertEqual(self.stats.peers.workers, 1)
        self.link.dataReceived(encode({"workers": 2}))
        self.assertEqual(self.stats.peers.workers, 2)

    def test_parent_gone(self):
        self.link.makeConnection(self.transport)
        self.link.connectionLost(Failure(Exception("stdin closed")))
        self.assertEqual(self.gone, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class GatewayStatsWithPeersTests(SynchronousTestCase):
    """A worker's figures: its own plus the others' (from the parent)."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        self.stats = GatewayStats(self.clock)
        self.other = RouteMetrics("backend", self.clock)

    def tell(self, started=None, workers=2):
        peers = self.stats.peers = self.stats.peers or PeerFigures()
        peers.update({"others": report(self.other, src=99), "started": started,
                      "workers": workers})

    def test_alone(self):
        finish(self.stats.route)
        figures = self.stats.figures()
        self.assertEqual(total(figures["routes"]["backend"]), 1)
        snap = self.stats.snapshot()
        self.assertEqual((snap.requests, snap.workers), (1, 1))

    def test_figures_add_the_others(self):
        own = self.stats.route
        finish(own, status=200, total=0.1)
        finish(own, status=503, total=0.3)
        own.request_started()
        finish(self.other, status=200, total=0.2)
        self.other.request_started()
        self.other.request_started()
        self.tell()
        route = self.stats.route_figures()
        self.assertEqual(route["requests"], {"GET": {"2xx": 2, "5xx": 1}})
        self.assertEqual(route["bytes_out"], 300)
        snap = self.stats.snapshot()
        self.assertEqual(snap.requests, 3)
        self.assertEqual(snap.errors, 1)
        self.assertEqual(snap.in_flight, 3)
        self.assertAlmostEqual(snap.mean_latency_ms, 200.0)
        self.assertEqual(snap.workers, 2)
        # The drain waits for this process's own requests only.
        self.assertEqual(self.stats.in_flight, 1)

    def test_no_others_yet(self):
        self.stats.peers = PeerFigures()
        self.stats.peers.update({"others": None, "started": START, "workers": 2})
        finish(self.stats.route)
        self.assertEqual(self.stats.snapshot().requests, 1)
        self.assertEqual(self.stats.snapshot().workers, 2)

    def test_gateway_started_is_the_earlier(self):
        self.assertEqual(self.stats.gateway_started, START)
        self.tell(started=START - 3)  # the parent started first
        self.assertEqual(self.stats.gateway_started, START - 3)
        self.clock.advance(2)
        self.assertEqual(self.stats.snapshot().uptime_seconds, 5.0)
        self.tell(started=START + 10)  # odd, but never later than this process
        self.assertEqual(self.stats.gateway_started, START)
        self.tell(started=None)
        self.assertEqual(self.stats.gateway_started, START)


class LiveMessagesWithPeersTests(SynchronousTestCase):
    """The live feed shows every worker's recent requests, each once."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        self.route = RouteMetrics("backend", self.clock)
        self.stats = GatewayStats(self.clock, self.route)
        self.stats.peers = PeerFigures()
        self.messages = LiveMessages(self.stats, "user-space.hf.space", self.clock)
        self.others = {7: RouteMetrics("backend", self.clock), 8: RouteMetrics("backend", self.clock)}

    def parent_says(self, *sources, started=START - 1):
        """The parent's answer: the latest snapshots of C{sources}, merged."""
        from wighaven.observe.metrics import merge_snapshots

        snapshots = [report(self.others[src], src=src) for src in sources]
        self.stats.peers.update(
            {"others": merge_snapshots(snapshots) if snapshots else None,
             "started": started, "workers": 1 + len(sources)}
        )

    def paths(self, message):
        return [entry["path"] for entry in message["recent"]]

    def test_each_entry_once_across_stats(self):
        finish(self.route, "/own1")
        self.clock.advance(0.1)
        finish(self.others[7], "/seven1")
        finish(self.others[8], "/eight1")
        self.parent_says(7, 8)
        self.clock.advance(0.1)
        first = self.messages.stats(show_paths=True)
        self.assertEqual(sorted(self.paths(first)), ["/eight1", "/own1", "/seven1"])
        self.assertEqual(first["requests"], 3)
        for entry in first["recent"]:
            self.assertEqual(set(entry), {"time", "method", "route", "path", "status", "ms"})

        # Nothing new: the same figures again send nothing twice.
        self.clock.advance(1)
        self.assertEqual(self.paths(self.messages.stats(show_paths=True)), [])

        # New entries, some arriving later than newer own ones (the parent's
        # figures are up to a second old): each still shows exactly once.
        finish(self.others[7], "/seven2")
        self.clock.advance(0.5)
        finish(self.route, "/own2")
        self.clock.advance(0.5)
        self.assertEqual(self.paths(self.messages.stats(show_paths=True)), ["/own2"])
        self.parent_says(7, 8)
        finish(self.others[8], "/eight2")  # not reported yet
        self.clock.advance(1)
        self.assertEqual(self.paths(self.messages.stats(show_paths=True)), ["/seven2"])
        self.parent_says(7, 8)
        self.clock.advance(1)
        self.assertEqual(self.paths(self.messages.stats(show_paths=True)), ["/eight2"])
        self.clock.advance(1)
        self.assertEqual(self.paths(self.messages.stats(show_paths=True)), [])

    def test_many_stats_messages_show_everything_once(self):
        shown = []
        for i in range(30):
            finish(self.route, "/own%d" % i)
            finish(self.others[7 + i % 2], "/other%d" % i)
            if i % 3 == 0:
                self.parent_says(7, 8)
            self.clock.advance(1)
            shown += self.paths(self.messages.stats(show_paths=True))
        self.parent_says(7, 8)
        shown += self.paths(self.messages.stats(show_paths=True))
        self.assertEqual(len(shown), len(set(shown)))
        self.assertEqual(
            set(shown), {"/own%d" % i for i in range(30)} | {"/other%d" % i for i in range(30)}
        )

    def test_hello_shows_only_what_was_sent(self):
        finish(self.route, "/own1")
        finish(self.others[7], "/seven1")
        self.parent_says(7)
        self.clock.advance(0.5)
        self.assertEqual(self.paths(self.messages.hello(show_paths=True)), [])  # nothing sent yet
        self.assertEqual(sorted(self.paths(self.messages.stats(show_paths=True))), ["/own1", "/seven1"])
        finish(self.route, "/own2")
        finish(self.others[7], "/seven2")
        finish(self.others[8], "/eight1")
        self.parent_says(7, 8)
        self.clock.advance(0.5)
        hello = self.messages.hello(show_paths=True)
        self.assertEqual(sorted(self.paths(hello)), ["/own1", "/seven1"])
        self.assertEqual(hello["requests"], 5)
        self.assertEqual(hello["uptime_seconds"], 2.0)  # from the parent's start
        self.assertEqual(sorted(self.paths(self.messages.stats(show_paths=True))),
                         ["/eight1", "/own2", "/seven2"])
        self.assertEqual(sorted(self.paths(self.messages.hello(show_paths=True))),
                         ["/eight1", "/own1", "/own2", "/seven1", "/seven2"])

    def test_a_worker_gone_then_replaced(self):
        finish(self.others[7], "/seven1")
        self.parent_says(7)
        self.assertEqual(self.paths(self.messages.stats(show_paths=True)), ["/seven1"])
        # 7 dies (its figures stay, retired), 9 replaces it: numbering from 1 again.
        self.others[9] = RouteMetrics("backend", self.clock)
        finish(self.others[9], "/nine1")
        self.clock.advance(1)
        self.parent_says(7, 9)
        self.assertEqual(self.paths(self.messages.stats(show_paths=True)), ["/nine1"])


# Integration: real processes.


def children(pid):
    """The live (not zombie) child processes of C{pid}."""
    kids = set()
    for path in glob.glob("/proc/%d/task/*/children" % pid):
        try:
            with open(path) as f:
                kids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    if not glob.glob("/proc/%d/task/*/children" % pid) and os.path.exists("/proc/%d" % pid):
        out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True,
                             text=True).stdout
        kids.update(int(p) for p in out.split())
    return {kid for kid in kids if alive(kid)}


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def poll(predicate, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def get(port, target, timeout=20):
    """One request on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, resp, resp.read()
    finally:
        conn.close()


def forward(port, n, target="/echo", timeout=20):
    """C{n} forwarded requests, each on a new connection: their X-Request-IDs."""
    ids = []
    for i in range(n):
        status, resp, body = get(port, "%s?i=%d" % (target, i), timeout)
        if status != 200:
            raise AssertionError("request %d: %d %r" % (i, status, body[:200]))
        ids.append(resp.getheader("X-Request-ID"))
    return ids


def workers_of(ids):
    """The workers (their request id prefixes) that answered C{ids}."""
    return {request_id[:12] for request_id in ids}


def both_serve(port, timeout=5.0):
    """
    Requests until both workers have answered some (a worker logs that it
    listens a moment before it accepts, and one after another, new
    connections come in runs on one worker: the kernel wakes the worker
    that went idle last): the X-Request-IDs of them all.
    """
    ids = []
    deadline = time.monotonic() + timeout
    while len(workers_of(ids)) < 2:
        if time.monotonic() > deadline:
            raise AssertionError("not both workers serve in %.0fs" % timeout)
        ids += forward(port, 10, "/warm")
    return ids


def health(port):
    status, _, body = get(port, "/gateway-health")
    if status != 200:
        raise AssertionError("health: %d %r" % (status, body))
    return json.loads(body)


def requests_total(port):
    """The sum of wighaven_requests_total over /_gateway/metrics."""
    status, _, body = get(port, "/_gateway/metrics")
    if status != 200:
        raise AssertionError("metrics: %d" % status)
    return sum(
        sample.value
        for family in text_string_to_metric_families(body.decode("utf-8"))
        for sample in family.samples
        if sample.name == "wighaven_requests_total"
    )


def start_on(port, timeout=30):
    """
    `twistd -n wighaven --workers 2` on C{port}, until it exits: its exit
    status and output.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PRIVATE_BACKEND_URL", "HF_TOKEN")}
    env.update({"PRIVATE_BACKEND_URL": "https://x.example", "INTERFACE": "127.0.0.1",
                "PYTHONPATH": ROOT})
    result = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "wighaven", "--port", str(port), "--workers", "2"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    return result.returncode, result.stdout + result.stderr


class CannotListenAssertions:
    def assertCannotListen(self, code, output, port):
        """Start-up stopped with exit status 1 and the usual one line."""
        self.assertEqual(code, 1, output)
        # twistd sends stderr to its log: the one line is the log's stderr line.
        refusals = [line for line in output.splitlines() if "wighaven:" in line]
        self.assertEqual(len(refusals), 1, output)
        self.assertIn("wighaven: cannot listen on 127.0.0.1:%d: Address already in use" % port,
                      refusals[0])
        self.assertNotIn("Traceback", output)
        self.assertNotIn("supervising", output)


class ClusterProcessTests(CannotListenAssertions, unittest.TestCase):
    """`twistd -n wighaven --workers 2`: two workers behind one port."""

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, _, origin = yield start_backend(self)
        log_dir = tempfile.mkdtemp(prefix="wighaven-cluster-")
        self.gateway = GatewayProcess(
            origin, os.path.join(log_dir, "gateway.log"), args=["--workers", "2"]
        )
        self.seen = set()  # every worker pid seen: none may outlive the test
        self.addCleanup(self.kill_everything)
        yield deferToThread(self.gateway.wait_ready)
        self.workers = yield deferToThread(self.wait_workers, 2)
        # Both serve: the ids of these requests, which the figures hold too.
        self.warmup = yield deferToThread(both_serve, self.gateway.port)

    def kill_everything(self):
        self.gateway.stop()
        for pid in self.seen:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def wait_workers(self, n, timeout=10.0, exclude=()):
        """The parent's workers once there are C{n}, none of them in C{exclude}."""

        def ready():
            kids = children(self.gateway.proc.pid)
            self.seen.update(kids)
            return kids if len(kids) == n and not kids & set(exclude) else None

        kids = poll(ready, timeout)
        if not kids:
            raise AssertionError(
                "no %d workers in %.0fs: %r\n%s"
                % (n, timeout, children(self.gateway.proc.pid), self.gateway.output())
            )
        return kids

    @defer.inlineCallbacks
    def wait_counted(self, n, timeout=6.0):
        """Until /gateway-health counts n requests (each worker has reported)."""
        counted = yield deferToThread(poll, lambda: health(self.gateway.port)["requests"] >= n,
                                      timeout, 0.2)
        self.assertTrue(counted, "health never counted %d requests" % n)

    @defer.inlineCallbacks
    def test_two_workers_serve_the_port(self):
        self.assertEqual(len(self.workers), 2)
        self.assertNotIn(self.gateway.proc.pid, self.workers)
        for pid in self.workers:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                self.assertIn(b"wighaven.run.worker", f.read())
        ids = yield deferToThread(forward, self.gateway.port, 200)
        self.assertEqual(len(ids), 200)
        prefixes = workers_of(self.warmup + ids)
        self.assertEqual(len(prefixes), 2, prefixes)
        for request_id in self.warmup + ids:
            self.assertRegex(request_id, r"^[0-9a-f]{24}$")
        # Every request reached the backend, with the token.
        forwarded = [r for r in self.backend.requests if r["uri"].startswith(b"/echo")]
        self.assertEqual(len(forwarded), 200)
        for r in forwarded:
            auth = [v for name, v in r["headers"] if name.lower() == "authorization"]
            self.assertEqual(auth, ["Bearer " + TOKEN])
        self.assertEqual(children(self.gateway.proc.pid), self.workers)

    @defer.inlineCallbacks
    def test_figures_add_up_whichever_worker_answers(self):
        ids = yield deferToThread(forward, self.gateway.port, 60)
        self.assertEqual(len(workers_of(self.warmup + ids)), 2)
        n = len(self.warmup) + 60
        yield deferToThread(time.sleep, 2.5)  # a report each way, at least
        answers = yield deferToThread(lambda: [health(self.gateway.port) for _ in range(20)])
        for answer in answers:
            self.assertEqual(answer["status"], "ok")
            self.assertEqual(answer["requests"], n, answer)
            self.assertEqual(answer["workers"], 2, answer)
            self.assertEqual(answer["in_flight"], 0, answer)
            self.assertGreater(answer["uptime_seconds"], 2.5)
        totals = yield deferToThread(
            lambda: [requests_total(self.gateway.port) for _ in range(10)]
        )
        self.assertEqual(totals, [n] * 10)

    @defer.inlineCallbacks
    def test_killed_worker_is_replaced_and_its_counts_kept(self):
        port = self.gateway.port
        yield deferToThread(forward, port, 40)
        n = len(self.warmup) + 40
        yield self.wait_counted(n)
        yield deferToThread(time.sleep, 1.5)  # both have reported since the last request
        victim = sorted(self.workers)[0]
        survivor = sorted(self.workers)[1]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()

        # Meanwhile, health over fresh connections: the total never goes down.
        def watch():
            seen = []
            while time.monotonic() - killed_at < 4.0:
                try:
                    seen.append(health(port))
                except (OSError, http.client.HTTPException):
                    pass  # a connection the killed worker had accepted
            return seen

        watching = deferToThread(watch)
        workers = yield deferToThread(self.wait_workers, 2, 3.0, {victim})
        replaced_in = time.monotonic() - killed_at
        self.assertIn(survivor, workers)
        self.assertLess(replaced_in, 3.0)
        seen = yield watching
        self.assertTrue(seen)
        low = [answer for answer in seen if answer["requests"] < n]
        self.assertEqual(low, [], "health went below %d after the kill" % n)

        # The port keeps answering, on both workers again.
        again = yield deferToThread(both_serve, port)
        yield deferToThread(time.sleep, 2.5)
        answers = yield deferToThread(lambda: [health(port) for _ in range(10)])
        self.assertEqual({(a["requests"], a["workers"]) for a in answers},
                         {(n + len(again), 2)})
        total_now = yield deferToThread(requests_total, port)
        self.assertEqual(total_now, n + len(again))
        self.assertIn("restarting in 1s", self.gateway.output())

    @defer.inlineCallbacks
    def test_new_connections_reach_the_live_worker_at_once_after_a_kill(self):
        """Nothing waits for a dead worker's replacement: the live one takes all."""
        port = self.gateway.port
        both = workers_of(self.warmup)
        victim = sorted(self.workers)[0]
        os.kill(victim, signal.SIGKILL)
        gone = yield deferToThread(poll, lambda: not alive(victim), 2.0, 0.01)
        self.assertTrue(gone)
        started = time.monotonic()
        ids = yield deferToThread(forward, port, 20, timeout=1.0)
        self.assertLess(time.monotonic() - started, 1.0)
        served_by = workers_of(ids)
        self.assertEqual(len(served_by), 1, served_by)
        self.assertLess(served_by, both)

    @defer.inlineCallbacks
    def test_a_hung_worker_is_killed_and_replaced(self):
        port = self.gateway.port
        yield deferToThread(time.sleep, 1.5)  # both have reported: past the start-up grace
        victim = sorted(self.workers)[0]
        os.kill(victim, signal.SIGSTOP)  # alive, silent, accepting nothing
        stopped_at = time.monotonic()
        ids = yield deferToThread(forward, port, 20, timeout=1.0)  # the other takes them all
        self.assertEqual(len(workers_of(ids)), 1)
        limit = HUNG_AFTER + 6.0  # silence, a tick, the restart delay, a start
        yield deferToThread(self.wait_workers, 2, limit, {victim})
        self.assertLess(time.monotonic() - stopped_at, limit)
        self.assertFalse(alive(victim))
        log = self.gateway.output()
        self.assertIn("silent for 6s: killed, to be restarted", log)
        self.assertIn("exited (signal 9)", log)
        yield deferToThread(both_serve, port)  # the replacement too, once started

    @defer.inlineCallbacks
    def test_a_second_gateway_on_the_port_stops(self):
        """Not a second gateway sharing the port unseen, with another token."""
        code, output = yield deferToThread(start_on, self.gateway.port)
        self.assertCannotListen(code, output, self.gateway.port)
        # The first one serves on.
        ids = yield deferToThread(forward, self.gateway.port, 10)
        self.assertEqual(len(ids), 10)

    @defer.inlineCallbacks
    def test_sigterm_drains_every_worker_and_exits_0(self):
        yield deferToThread(forward, self.gateway.port, 10)
        started = time.monotonic()
        self.gateway.proc.send_signal(signal.SIGTERM)
        code = yield deferToThread(self.gateway.proc.wait, 15)
        elapsed = time.monotonic() - started
        self.assertEqual(code, 0, self.gateway.output())
        self.assertLess(elapsed, 5.0)
        gone = yield deferToThread(
            poll, lambda: not any(alive(pid) for pid in self.workers), 5.0
        )
        self.assertTrue(gone, "workers left: %r" % [p for p in self.workers if alive(p)])
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.gateway.port), timeout=2).close()
        log = self.gateway.output()
        self.assertIn("draining 2 workers", log)
        self.assertNotIn("restarting", log)
        self.assertNotIn("Traceback", log)


class ClusterStartupTests(CannotListenAssertions, unittest.TestCase):
    timeout = 60

    def test_port_in_use_stops_startup(self):
        with plain_listener() as taken:
            port = taken.getsockname()[1]
            self.assertCannotListen(*start_on(port), port)

    def test_port_shared_by_a_reuse_port_listener_stops_startup(self):
        """A listener that would let others join (SO_REUSEPORT) still has the port."""
        with plain_listener(reuse_port=True) as taken:
            port = taken.getsockname()[1]
            self.assertCannotListen(*start_on(port), port)
