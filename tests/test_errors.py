"""Tests for L{wighaven.proxy.errors}: how failures of the upstream request map
to 502/504 answers with fixed details (bare or wrapped in the reasons of
ResponseNeverReceived / RequestTransmissionFailed), that no exception text
reaches the client, and the JSON body and headers of an error answer.
"""

import json

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, error
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import (
    RequestGenerationFailed,
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.test.requesthelper import DummyRequest

from wighaven.proxy import errors
from wighaven.proxy.errors import GatewayError, classify_failure, error_body, respond_with_error

SECRET = "hf_S3cr3t_in_exception_text"

TIMEOUT = "the backend did not answer in time"
DNS = "the backend's hostname could not be resolved"
REFUSED = "the backend refused the connection"
UNREACHABLE = "the backend could not be reached"
TLS_TRUST = "TLS handshake with the backend failed (certificate not trusted)"
TLS_NAME = "TLS: the backend's certificate does not match its hostname"
CLOSED = "the backend closed the connection without an answer"
NOT_SENT = "the request could not be sent to the backend"


def failure(exception):
    """A Failure of C{exception} (with no traceback needed)."""
    return Failure(exception)


# (exception, status, detail): what each cause of failure becomes.
CAUSES = [
    (defer.TimeoutError(SECRET), 504, TIMEOUT),
    (error.TimeoutError(SECRET), 504, TIMEOUT),
    (error.DNSLookupError(SECRET), 502, DNS),
    (error.ConnectionRefusedError(SECRET), 502, REFUSED),
    (error.ConnectError(SECRET), 502, UNREACHABLE),
    (error.NoRouteError(SECRET), 502, UNREACHABLE),
    (SSL.Error([("SSL routines", "", "certificate verify failed " + SECRET)]), 502, TLS_TRUST),
    (VerificationError(errors=[SECRET]), 502, TLS_NAME),
]

WRAPPERS = [
    ("bare", lambda f: f),
    ("ResponseNeverReceived", lambda f: failure(ResponseNeverReceived([f]))),
    ("RequestTransmissionFailed", lambda f: failure(RequestTransmissionFailed([f]))),
    (
        "nested",
        lambda f: failure(ResponseNeverReceived([failure(RequestTransmissionFailed([f]))])),
    ),
]


class ClassifyFailureTests(SynchronousTestCase):
    def assertClassified(self, fail, status, detail, msg=None):
        err = classify_failure(fail)
        self.assertEqual((err.status, err.detail), (status, detail), msg)
        self.assertEqual(err.code, "gateway_timeout" if status == 504 else "bad_gateway")
        self.assertNotIn(SECRET, err.detail)

    def test_causes_bare_and_wrapped(self):
        for exception, status, detail in CAUSES:
            for name, wrap in WRAPPERS:
                self.assertClassified(
                    wrap(failure(exception)), status, detail, "%s, %s" % (type(exception), name)
                )

    def test_cause_among_other_reasons(self):
        """A telling reason is found beside a plain connection loss."""
        fail = failure(
            ResponseNeverReceived(
                [failure(ConnectionDone()), failure(SSL.Error([("", "", SECRET)]))]
            )
        )
        self.assertClassified(fail, 502, TLS_TRUST)

    def test_timeout_wins(self):
        fail = failure(
            ResponseNeverReceived(
                [failure(error.ConnectionRefusedError()), failure(defer.TimeoutError())]
            )
        )
        self.assertClassified(fail, 504, TIMEOUT)

    def test_hostname_mismatch_over_tls_error(self):
        fail = failure(
            ResponseNeverReceived([failure(SSL.Error([])), failure(VerificationError(errors=[]))])
        )
        self.assertClassified(fail, 502, TLS_NAME)

    def test_generic_response_failed(self):
        for exception in (
            ResponseFailed([failure(ConnectionDone(SECRET))]),
            ResponseNeverReceived([failure(ConnectionDone(SECRET))]),
            ResponseFailed([]),
        ):
            self.assertClassified(failure(exception), 502, CLOSED)

    def test_request_generation_failed(self):
        fail = failure(RequestGenerationFailed([failure(ValueError(SECRET))]))
        self.assertClassified(fail, 502, NOT_SENT)

    def test_anything_else(self):
        for exception in (
            ValueError(SECRET),
            RuntimeError(SECRET),
            RequestTransmissionFailed([failure(ConnectionDone(SECRET))]),
        ):
            self.assertClassified(failure(exception), 502, UNREACHABLE)


class ErrorBodyTests(SynchronousTestCase):
    def test_json(self):
        body = error_body(GatewayError(502, "bad_gateway", "the backend could not be reached"))
        self.assertIsInstance(body, bytes)
        self.assertEqual(
            json.loads(body.decode("utf-8")),
            {"error": "bad_gateway", "detail": "the backend could not be reached"},
        )

    def test_extra_fields(self):
        body = error_body(errors.NOT_FOUND, request_id="abc")
        self.assertEqual(
            json.loads(body),
            {"error": "not_found", "detail": "no gateway endpoint here", "request_id": "abc"},
        )

    def test_classified_body_has_no_exception_text(self):
        for exception, _, _ in CAUSES:
            body = error_body(classify_failure(failure(exception)))
            self.assertNotIn(SECRET.encode(), body)
            json.loads(body)


class RespondWithErrorTests(SynchronousTestCase):
    def respond(self, err):
        request = DummyRequest([b""])
        body = respond_with_error(request, err)
        return request, body

    def test_status_headers_body(self):
        err = GatewayError(504, "gateway_timeout", TIMEOUT)
        request, body = self.respond(err)
        headers = request.responseHeaders
        self.assertEqual(request.responseCode, 504)
        self.assertEqual(body, error_body(err))
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(headers.getRawHeaders(b"cache-control"), [b"no-store"])
        self.assertEqual(headers.getRawHeaders(b"content-length"), [b"%d" % len(body)])
        self.assertFalse(headers.hasHeader(b"allow"))

    def test_method_not_allowed_lists_allowed_methods(self):
        request, _ = self.respond(errors.METHOD_NOT_ALLOWED)
        self.assertEqual(request.responseCode, 405)
        allow = request.responseHeaders.getRawHeaders(b"allow")[0]
        self.assertIn(b"GET", allow)
        self.assertNotIn(b"TRACE", allow)
        self.assertNotIn(b"CONNECT", allow)

    def test_fixed_errors(self):
        self.assertEqual(
            [(e.status, e.code) for e in (errors.BAD_REQUEST_TARGET, errors.METHOD_NOT_ALLOWED,
                                          errors.NOT_FOUND)],
            [(400, "bad_request"), (405, "method_not_allowed"), (404, "not_found")],
        )
