"""The admin API's "test connection": it always answers, never fails (the
real exchanges over sockets are in test_admin_api)."""

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from wighaven.admin.connection_test import test_connection as check_connection


class RefusingPolicy:
    """A TLS policy that cannot name the host (as Twisted's does for a name IDNA 2008 refuses)."""

    def creatorForNetloc(self, hostname, port):
        raise ValueError("Codepoint not allowed")


class ConnectionTestTests(SynchronousTestCase):

    def test_a_url_the_client_cannot_start_with_is_an_answer(self):
        outcome = self.successResultOf(
            check_connection(MemoryReactorClock(), RefusingPolicy(), "https://host.example"))
        self.assertEqual(outcome["ok"], False)
        self.assertIsNone(outcome["status"])
        self.assertEqual(outcome["error"], "the connection failed")
