"""One worker process of a gateway with WORKERS above 1.

Started by L{wighaven.run.cluster.Supervisor} as C{python -m wighaven.run.worker},
never by hand: its configuration comes from the environment its parent
hands it, its listening socket is descriptor 3 (the one socket every worker
accepts from) and its parent's end is stdin (answers) and descriptor 4
(reports). It serves exactly like a single-process gateway (the same
L{wighaven.run.service.GatewayService}); only its figures are added up with the
other workers', and its recent requests and log lines are listed with
theirs in the admin panel. Its slot, from 0, comes in WIGHAVEN_WORKER_SLOT.
"""

from __future__ import annotations

import signal

# A SIGHUP (a reload the supervisor passes on) may come while this worker
# starts: it is kept for later, instead of ending the process as it would
# by default. First thing, before the imports below take their time.
_HANGUPS = []
if __name__ == "__main__":
    signal.signal(signal.SIGHUP, lambda signum, frame: _HANGUPS.append(signum))

import os  # noqa: E402
import sys  # noqa: E402

from twisted.internet import stdio
from twisted.logger import globalLogBeginner

from .cluster import LISTEN_FD, REPORT_FD, WorkerLink, first_message
from ..config.settings import ConfigError, load_config
from ..observe.logs import filtered_observer, log_ring


def main() -> None:
    from twisted.internet import reactor

    from .service import GatewayService

    try:
        config = load_config(os.environ)
    except ConfigError as e:
        sys.stderr.write("wighaven worker: %s\n" % (e,))
        raise SystemExit(1)
    # Its recent lines (the admin API's) are fed behind the same LOG_LEVEL filter.
    observer = filtered_observer(config.log_level, sys.stdout, config.log_format, log_ring())
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    gateway = GatewayService(config, reactor, handle_signals=True, listen_fd=LISTEN_FD)
    link = WorkerLink(gateway.stats, reactor, parent_gone=gateway.drain_then_stop)
    if gateway.recent is not None:
        # The admin panel's recent requests and log lines: every worker's.
        gateway.recent.peers = link.queries
        link.queries.answerer = gateway.recent.answer
    # The others' figures first: the very first request already sees them.
    link.dataReceived(first_message(0))
    gateway.startService()  # from here on, SIGHUP reloads
    if _HANGUPS:  # the file may have changed after it was read above
        reactor.callWhenRunning(gateway.reloader.reload)
    stdio.StandardIO(link, stdin=0, stdout=REPORT_FD, reactor=reactor)
    # Ctrl-C in a terminal reaches the whole process group: the supervisor
    # turns it into a drain of every worker, so a worker ignores it itself.
    reactor.callWhenRunning(signal.signal, signal.SIGINT, signal.SIG_IGN)
    reactor.run()


if __name__ == "__main__":
    main()
