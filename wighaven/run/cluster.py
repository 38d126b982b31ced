"""Several gateway processes on one port (WORKERS above 1).

Why processes: one Python process runs on one core at a time, so a gateway
that must use every core runs several. The twistd process becomes the
L{Supervisor}; it serves no request itself. It binds ONE listening socket
(L{listening_socket}, without SO_REUSEPORT) and hands that same socket to
every worker as file descriptor 3 (L{LISTEN_FD}); the workers accept from
it side by side, one connection at a time
(L{wighaven.proxy.transport.SharedPort}), so the idle ones take the new
connections. Why one socket: a port anything else listens on, another
gateway included, can't be had (EADDRINUSE, the usual one line and exit
1), and nothing is queued for one worker in particular: a worker that dies
or hangs simply stops accepting, the others take every new connection at
once, and no connection waiting in the queue is lost.

Figures: a worker counts only what it serves. Once a second each worker
writes its metrics snapshot (one JSON line) to descriptor 4 (L{REPORT_FD}).
Once a second too (L{Supervisor.tick}) the parent tells each worker that
has reported since it was last told, on its stdin, the sum of every
*other* worker's latest snapshot, plus those of workers that died (their
counters must not vanish from the totals). That is one pass over all the
snapshots whatever the number of workers (L{everyone_but}: prefix and
suffix sums, exact, no subtraction), and at most one message per report
(two owed at most), so a worker that neither reads nor reports makes
nothing pile up in the parent. A new worker is told at once, and reads it
(L{first_message}) before it serves anything. The worker adds its own
live figures to that (L{PeerFigures}, read through
L{wighaven.observe.stats.GatewayStats.figures}), so /gateway-health, the dashboard
and /_gateway/metrics show the whole gateway whichever worker answers, the
other workers' part at most about two seconds old. No other server is
involved.

Questions: the admin panel's recent log lines and exchanges are each
worker's own; the worker an admin's request reaches asks the others for
theirs over the same pipes, the parent passing questions and answers on
(L{wighaven.run.peer_queries}). Each worker is told its slot
(L{wighaven.observe.recent.WORKER_SLOT_ENV}), which its entries' ids carry.

Lifecycle: a worker that exits unasked is restarted (after 1 s, doubling
up to 30 s while it keeps dying young). A worker silent for L{HUNG_AFTER}
seconds (L{FIRST_REPORT_WITHIN} after its start) is hung: it is killed
(SIGKILL) and restarted the same way. Silence is counted in the parent's
own ticks, so a parent that was itself stopped (Ctrl-Z) or whose clock
jumped kills nobody. SIGTERM to the parent closes its copy of the socket
and passes SIGTERM on: every worker drains (see L{wighaven.run.drain}) and the
parent exits 0 once all are gone; a second SIGTERM ends everything at
once. A worker whose parent disappears (its stdin closes) drains and exits
too, so no orphan keeps the port.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .drain import drain_on_sigterm
from .peer_queries import GATHER_TIMEOUT, PeerQueries, valid_ask
from ..observe.recent import WORKER_SLOT_ENV
from ..observe.logs import give_observer_to_twistd
from ..proxy.transport import address_family
from ..observe.metrics import Histogram, merge_snapshots

__all__ = [
    "LISTEN_FD", "REPORT_FD", "PeerFigures", "Supervisor", "WorkerLink", "everyone_but",
    "first_message", "listening_socket",
]

LISTEN_FD = 3  # the listening socket, the same in every worker
REPORT_FD = 4  # the worker's snapshots to the parent
REPORT_INTERVAL = 1.0
RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 30.0
YOUNG = 10.0  # a worker dying sooner than this after its start backs the restarts off
HUNG_AFTER = 5.0  # seconds without a report: the worker is hung
# Start-up takes well under a second; many workers starting on few cores
# take longer, and a worker that has not started accepts nothing anyway.
FIRST_REPORT_WITHIN = 30.0
OWED_MAX = 2  # answers owed to a worker at most (one per report)
MAX_LINE = 4 << 20  # bytes of one snapshot line, far above what a snapshot takes
_GAUGES = ("in_flight", "open_websockets", "open_streams")


class _Lines:
    """Newline-delimited JSON over a byte stream, bounded in length."""

    def __init__(self, on_message):
        self._buffer = b""
        self._on_message = on_message

    def feed(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:
            raise ValueError("a report line over %d bytes" % MAX_LINE)
        for line in lines:
            if line.strip():
                self._on_message(json.loads(line))


def encode(message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"


def listening_socket(interface: str, port: int, backlog: int) -> socket.socket:
    """
    The one listening socket every worker accepts from. No SO_REUSEPORT: a
    port that anything else listens on (another gateway, with workers or
    not) can't be had, instead of being shared with it unseen.

    @raise OSError: the address can't be had.
    """
    sock = socket.socket(address_family(interface), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((interface, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _merged(a, b):
    """Two snapshots (either may be None) as one."""
    if a is None or b is None:
        return b if a is None else a
    return merge_snapshots([a, b])


def everyone_but(snapshots, base=None) -> list:
    """
    For each i, C{base} merged with every snapshot but C{snapshots[i]} (None
    entries count for nothing; None when nothing is left). Linear work: the
    merges of everything before i and of everything after i, each built
    once, then one merge per i; exact, since nothing is subtracted.
    """
    before = [base]  # before[i]: base and snapshots[:i]
    for snapshot in snapshots:
        before.append(_merged(before[-1], snapshot))
    after = [None]  # built backwards: after[-1 - i] is snapshots[len - i:]
    for snapshot in reversed(snapshots):
        after.append(_merged(snapshot, after[-1]))
    after.reverse()  # after[i]: snapshots[i:]
    return [_merged(before[i], after[i + 1]) for i in range(len(snapshots))]


def _retired(snapshot):
    """
    A dead worker's last figures: its counters stay, its gauges are zero, and
    so is its last minute (a moving window: kept, it would weigh on the error
    ratio and the percentiles for ever).
    """
    for route in snapshot["routes"].values():
        for key in _GAUGES:
            route[key] = 0
        latency = Histogram.from_dict(route["last_minute"]["latency"])
        latency.reset()
        route["last_minute"] = {"requests": 0, "errors": 0, "latency": latency.to_dict()}
    return snapshot


class _Worker(protocol.ProcessProtocol):
    """
    The parent's end of one worker process.

    @ivar owed: answers owed, one per report (at most L{OWED_MAX}).
    @ivar silent: the parent's ticks since the worker last wrote anything.
    """

    def __init__(self, supervisor: "Supervisor", slot: int):
        self.supervisor = supervisor
        self.slot = slot
        self.snapshot = None
        self.started_at = None
        self.owed = 0
        self.silent = 0
        self.heard = False  # has written anything yet
        self.killed = False
        self.ended = defer.Deferred()
        self._lines = _Lines(self._report)

    @property
    def pid(self):
        return self.transport.pid if self.transport is not None else None

    def childDataReceived(self, fd, data):
        if fd != REPORT_FD:
            return
        self.heard = True
        self.silent = 0
        try:
            self._lines.feed(data)
        except ValueError:  # includes bad JSON: a worker is never trusted blindly
            self.supervisor._log.warn("worker {slot}: unreadable report, dropped", slot=self.slot)
            self._lines = _Lines(self._report)

    def _report(self, message):
        if not isinstance(message, dict):
            return
        if "ask" in message:
            return self.supervisor._relay_ask(self, message["ask"])
        if "answer" in message:
            return self.supervisor._relay_answer(self, message["answer"])
        snapshot = message.get("snapshot")
        if isinstance(snapshot, dict) and isinstance(snapshot.get("routes"), dict):
            self.snapshot = snapshot
            self.owed = min(self.owed + 1, OWED_MAX)

    def hung(self) -> bool:
        """Silent too long: for L{HUNG_AFTER} s, or L{FIRST_REPORT_WITHIN} s since its start."""
        limit = HUNG_AFTER if self.heard else FIRST_REPORT_WITHIN
        return not self.killed and self.silent * REPORT_INTERVAL > limit

    def send(self, message):
        if self.transport is not None and self.transport.pid is not None:
            self.transport.writeToChild(0, encode(message))

    def signal(self, name):
        if self.transport is not None and self.transport.pid is not None:
            try:
                self.transport.signalProcess(name)
            except OSError:
                pass

    def processEnded(self, reason):
        self.supervisor._worker_ended(self, reason.value)
        self.ended.callback(None)


class _Gather:
    """A worker's question under way: who asked, who has yet to answer, the timeout."""

    __slots__ = ("asker", "waiting", "timer")

    def __init__(self, asker, waiting, timer):
        self.asker = asker
        self.waiting = waiting
        self.timer = timer


class Supervisor(service.Service):
    """
    The parent of C{config.workers} gateway workers (see the module's doc).

    @param env: the environment the workers get; it carries the whole
        configuration (command-line values included), so a worker loads the
        very same settings.
    """

    _log = Logger()

    def __init__(self, config, reactor, env, log_observer=None, handle_signals=False,
                 backlog=8192, argv=None):
        self.config = config
        self._reactor = reactor
        self._env = dict(env, WORKERS="1")
        self._log_observer = log_observer
        self._handle_signals = handle_signals
        self._backlog = backlog
        self._argv = argv or [sys.executable, "-m", "wighaven.run.worker"]
        self.started = reactor.seconds()
        self.workers = [None] * config.workers
        self.retired = None  # figures of workers that died
        self.restarts = 0
        self.stopping = False
        self._socket = None
        self._restart_delay = {}
        self._ticks = LoopingCall(self.tick)
        self._ticks.clock = reactor
        self.port = None
        self._gathers = {}  # (asking slot, its id) -> _Gather

    def setServiceParent(self, parent):
        """Under twistd, hand it the LOG_LEVEL-filtered observer it logs with."""
        super().setServiceParent(parent)
        give_observer_to_twistd(parent, self._log_observer)

    def privilegedStartService(self):
        """Bind now: a port that can't be had stops start-up with one line."""
        super().privilegedStartService()
        from .service import exit_cannot_listen, raise_open_files_limit

        raise_open_files_limit()
        if self._socket is not None:
            return
        config = self.config
        try:
            self._socket = listening_socket(config.interface, config.port, self._backlog)
        except OSError as e:
            exit_cannot_listen(config, e.strerror)
        self.port = self._socket.getsockname()[1]

    def startService(self):
        if self._socket is None:
            self.privilegedStartService()
        super().startService()
        for slot in range(len(self.workers)):
            self._spawn(slot, tell=False)
        told = self.peer_messages()  # once all exist: each counts them all
        for worker in self.workers:
            worker.send(told[worker.slot])
        self._ticks.start(REPORT_INTERVAL, now=False)
        self._log.info(
            "WigHaven Gateway supervising {n} workers on {host}:{port}",
            n=len(self.workers), host=self.config.interface, port=self.port,
        )
        if self._handle_signals:
            # SIGTERM drains every worker, then exits 0; a second one ends all
            # at once (the workers, told again, exit at once too).
            self._reactor.callWhenRunning(
                drain_on_sigterm, self._reactor, lambda: self.stopping, self._drain_then_stop,
                self._terminate_workers,
            )
            # SIGHUP: each worker re-reads the config file (wighaven.run.reload).
            self._reactor.callWhenRunning(
                signal.signal, signal.SIGHUP,
                lambda signum, frame: self._reactor.callFromThread(self.reload_workers),
            )

    def reload_workers(self):
        """Pass a reload on: every live worker re-reads the config file and swaps its table."""
        self._log.info("SIGHUP: the workers re-read the config file")
        for worker in self._live():
            worker.signal("HUP")

    def _spawn(self, slot, tell=True):
        if self.stopping:
            return
        worker = _Worker(self, slot)
        worker.started_at = self._reactor.seconds()
        self.workers[slot] = worker
        self._reactor.spawnProcess(
            worker,
            self._argv[0],
            self._argv,
            # Its slot numbers its recent entries' ids (wighaven.observe.recent).
            env=dict(self._env, **{WORKER_SLOT_ENV: str(slot)}),
            childFDs={0: "w", 1: 1, 2: 2, LISTEN_FD: self._socket.fileno(), REPORT_FD: "r"},
        )
        # Told at once, not only at the next tick: the worker reads this
        # (first_message) before it serves anything, so no request is
        # answered with its own figures alone.
        if tell:
            worker.send(self.peer_messages()[slot])

    def peer_messages(self) -> dict:
        """
        What each worker would be told now, by slot: everyone else's figures
        (the retired ones included), the start time, the number of workers.
        """
        present = [w for w in self.workers if w is not None]
        others = everyone_but([w.snapshot for w in present], self.retired)
        workers = len(self._live())
        return {
            worker.slot: {"others": figures, "started": self.started, "workers": workers}
            for worker, figures in zip(present, others)
        }

    def tick(self):
        """
        Once a L{REPORT_INTERVAL}: kill the hung workers, then answer each
        worker owed an answer, all from one L{peer_messages}.
        """
        for worker in self._live():
            worker.silent += 1
            if worker.hung():
                self._kill_hung(worker)
        owed = [w for w in self._live() if w.owed]
        if not owed:
            return
        told = self.peer_messages()
        for worker in owed:
            worker.owed -= 1
            worker.send(told[worker.slot])

    def _relay_ask(self, asker, ask):
        """A worker's question (L{wighaven.run.peer_queries}): to every other live worker."""
        if not valid_ask(ask):
            return
        key = (asker.slot, ask["id"])
        others = [w for w in self._live() if w is not asker]
        if key in self._gathers or not others:
            asker.send({"gathered": {"id": ask["id"]}})
            return
        timer = self._reactor.callLater(GATHER_TIMEOUT, self._gathered, key)
        self._gathers[key] = _Gather(asker, {w.slot for w in others}, timer)
        question = {"ask": {"from": asker.slot, "id": ask["id"], "what": ask["what"],
                            "query": ask["query"]}}
        for worker in others:
            worker.send(question)

    def _relay_answer(self, worker, answer):
        if not isinstance(answer, dict):
            return
        key = (answer.get("from"), answer.get("id"))
        gather = self._gathers.get(key) if type(key[0]) is int else None
        if gather is None or worker.slot not in gather.waiting:
            return  # late (after the timeout), or not asked of it
        gather.waiting.discard(worker.slot)
        if isinstance(answer.get("part"), dict):
            gather.asker.send({"part": {"id": key[1], "part": answer["part"]}})
        if not gather.waiting:
            self._gathered(key)

    def _gathered(self, key, tell: bool = True):
        """The question of C{key} is over: its asker is told (unless C{tell} is false)."""
        gather = self._gathers.pop(key, None)
        if gather is None:
            return
        if gather.timer.active():
            gather.timer.cancel()
        if tell:
            gather.asker.send({"gathered": {"id": key[1]}})

    def _kill_hung(self, worker):
        self._log.warn(
            "worker {slot} (pid {pid}) silent for {silent:.0f}s: killed, to be restarted",
            slot=worker.slot, pid=worker.pid, silent=worker.silent * REPORT_INTERVAL,
        )
        worker.killed = True
        worker.signal("KILL")

    def _worker_ended(self, worker, status):
        # Its questions end, and no one waits for its answers any more.
        for key, gather in list(self._gathers.items()):
            if gather.asker is worker:
                self._gathered(key, tell=False)
            elif worker.slot in gather.waiting:
                gather.waiting.discard(worker.slot)
                if not gather.waiting:
                    self._gathered(key)
        if worker.snapshot is not None:
            last = _retired(worker.snapshot)
            self.retired = merge_snapshots([self.retired, last]) if self.retired else last
        if self.workers[worker.slot] is worker:
            self.workers[worker.slot] = None
        if self.stopping:
            return
        code = getattr(status, "exitCode", None)
        lived = self._reactor.seconds() - worker.started_at
        # 1 s, then twice the last delay (up to 30 s) while it keeps dying young.
        delay = RESTART_DELAY
        if lived < YOUNG:
            delay = self._restart_delay.get(worker.slot, RESTART_DELAY)
        self._restart_delay[worker.slot] = min(delay * 2, RESTART_DELAY_MAX)
        self.restarts += 1
        self._log.warn(
            "worker {slot} exited ({how}) after {lived:.1f}s; restarting in {delay:.0f}s",
            slot=worker.slot,
            how="status %s" % code if code is not None else "signal %s" % getattr(status, "signal", "?"),
            lived=lived,
            delay=delay,
        )
        self._reactor.callLater(delay, self._spawn, worker.slot)

    def _terminate_workers(self):
        for worker in self._live():
            worker.signal("TERM")

    def _live(self):
        return [w for w in self.workers if w is not None and w.pid is not None]

    def _drain_then_stop(self):
        d = self.drain()
        d.addBoth(lambda _: self._reactor.stop())

    def drain(self) -> defer.Deferred:
        """
        Stop listening, have every worker drain, fire once all have exited
        (the ticks go on meanwhile: a worker that hangs while draining is
        killed).
        """
        self.stopping = True
        self._log.info("draining {n} workers", n=len(self._live()))
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        live = self._live()
        self._terminate_workers()
        done = defer.gatherResults([w.ended for w in live]) if live else defer.succeed(None)
        return done.addBoth(self._stop_ticking)

    def _stop_ticking(self, result):
        if self._ticks.running:
            self._ticks.stop()
        return result

    @defer.inlineCallbacks
    def stopService(self):
        """Workers still running when the service stops are drained, then killed."""
        super().stopService()
        if not self._live():
            self._stop_ticking(None)
            return
        done = self.drain()
        limit = self.config.drain_timeout + 5.0
        timer = self._reactor.callLater(limit, self._kill_the_rest)
        yield done
        if timer.active():
            timer.cancel()

    def _kill_the_rest(self):
        for worker in self._live():
            worker.signal("KILL")


class PeerFigures:
    """What a worker knows of the others, from its parent's last message."""

    def __init__(self):
        self._others = None
        self.started = None
        self.workers = 1

    def snapshot(self):
        return self._others

    def update(self, message) -> None:
        if not isinstance(message, dict):
            return
        others = message.get("others")
        self._others = others if isinstance(others, dict) else None
        started = message.get("started")
        self.started = float(started) if isinstance(started, (int, float)) else None
        workers = message.get("workers")
        self.workers = workers if isinstance(workers, int) and workers > 0 else 1


def first_message(fd: int = 0, timeout: float = 5.0) -> bytes:
    """
    A worker's first message from its parent (sent at spawn), read before
    the worker serves anything: the bytes read, up to the end of the first
    line at least (more may follow it); less when the parent's end closes or
    nothing comes in C{timeout} seconds. Read through the reactor, a message
    of more than one pipe read would take several reactor turns, and
    requests already queued on the socket would be answered in between with
    this worker's own figures alone.
    """
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        data += chunk
    return data


class WorkerLink(protocol.Protocol):
    """
    A worker's end of its parent (over StandardIO: stdin in, REPORT_FD
    out): sends this worker's figures once a second and keeps the answer in
    C{stats.peers}; carries its questions to the other workers and theirs
    to it (C{queries}, a L{wighaven.run.peer_queries.PeerQueries}).
    C{parent_gone} is called when the parent's end closes.
    """

    def __init__(self, stats, clock, parent_gone, interval: float = REPORT_INTERVAL):
        self._stats = stats
        self._clock = clock
        self._peers = stats.peers = PeerFigures()
        self._parent_gone = parent_gone
        self.queries = PeerQueries(self._write, clock)
        self._lines = _Lines(self._received)
        self._source = os.getpid()
        self._loop = LoopingCall(self.report)
        self._loop.clock = clock
        self._interval = interval

    def connectionMade(self):
        self._loop.start(self._interval, now=True)

    def report(self):
        now = self._clock.seconds()
        routes = self._stats.own_routes(now)
        for snapshot in routes.values():
            for entry in snapshot["recent"]:
                entry["src"] = self._source
        self._write({"snapshot": {"time": now, "routes": routes}})

    def _write(self, message) -> None:
        if self.transport is None:
            raise ConnectionError("not connected to the supervisor yet")
        self.transport.write(encode(message))

    def _received(self, message) -> None:
        if not self.queries.received(message):
            self._peers.update(message)

    def dataReceived(self, data):
        try:
            self._lines.feed(data)
        except ValueError:
            self._lines = _Lines(self._received)

    def connectionLost(self, reason):
        if self._loop.running:
            self._loop.stop()
        self.queries.close()
        self._parent_gone()
