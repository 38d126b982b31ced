"""The epoll reactor's event loop without a logging context per event.

Why: Twisted's EPollReactor.doPoll hands each ready descriptor to its
handler through log.callWithLogger, which computes the descriptor's log
prefix and pushes and pops a logging context around the call, only so that
legacy log lines written meanwhile carry that prefix as their "system". A
profile of the gateway under many small requests puts a tenth of its time
there: more than parsing both requests and responses. The gateway's log
lines never use that system field (its access lines name the client
themselves), so L{lean_poll} gives the reactor a doPoll that calls the
handler directly and keeps the one thing callWithLogger adds besides: an
exception that escapes a handler is logged, and the loop goes on with the
next descriptor.

Everything else is the reactor's own: the same poller, the same table of
selectables and the same _doReadOrWrite (which closes a connection whose
handler failed). Reactors other than Twisted's epoll reactor are left as
they are. The private names this touches (EPollReactor._poller,
_selectables, _doReadOrWrite) are listed in tests/test_twisted_private.py,
one test each.
"""

from __future__ import annotations

import errno

from twisted.logger import Logger

__all__ = ["lean_poll"]

_log = Logger()


def lean_poll(reactor) -> bool:
    """
    Give C{reactor} the lean doPoll when it is Twisted's epoll reactor;
    True when it did.
    """
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # not Linux
        return False
    if not isinstance(reactor, EPollReactor):
        return False
    poller = reactor._poller
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite

    def do_poll(timeout):
        try:
            ready = poller.poll(-1 if timeout is None else timeout, len(selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        for fd, event in ready:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                handle(selectable, fd, event)
            except Exception:
                _log.failure("Unhandled error handling a ready descriptor")

    reactor.doIteration = reactor.doPoll = do_poll
    return True
