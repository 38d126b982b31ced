"""Session affinity (wighaven.routing.affinity): the cookie's tag, Gradio's
session and event keys, and the bounded session memory."""

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wighaven.config.routes import Upstream
from wighaven.routing.affinity import (
    file_keys_from_join,
    uploaded_files_from_answer,
    MAX_JOIN_BODY, AffinityCookie, Sessions, event_id_from_answer, gradio_keys,
    session_hash_from_join,
)


def upstream(name):
    return Upstream(url="https://user-%s.hf.space" % name, scheme="https",
                    host="user-%s.hf.space" % name, port=443)


class CookieTests(SynchronousTestCase):
    def setUp(self):
        self.a, self.b = upstream("a"), upstream("b")
        self.cookie = AffinityCookie(b"k" * 32, "chat-ui", [self.a, self.b], "/chat")

    def value(self, upstream):
        header = self.cookie.set_cookie(upstream, secure=True)
        return header.split(b";")[0].split(b"=", 1)[1]

    def test_set_cookie_attributes(self):
        header = self.cookie.set_cookie(self.a, secure=True)
        name, _, rest = header.partition(b"=")
        self.assertEqual(name, b"wh_aff_chat_ui")
        self.assertTrue(rest.endswith(b"; Path=/chat; HttpOnly; SameSite=Lax; Secure"), rest)
        self.assertNotIn(b"Secure", self.cookie.set_cookie(self.a, secure=False))

    def test_the_value_names_its_upstream_and_nothing_else(self):
        self.assertIs(self.cookie.upstream_for(self.value(self.a)), self.a)
        self.assertIs(self.cookie.upstream_for(self.value(self.b)), self.b)
        self.assertNotEqual(self.value(self.a), self.value(self.b))
        for v in (self.value(self.a), self.value(self.b)):
            self.assertNotIn(b"hf.space", v)
            self.assertNotIn(b"user-", v)
            self.assertGreaterEqual(len(v), 24)  # 144 bits of HMAC
        self.assertIsNone(self.cookie.upstream_for(b"forged"))
        self.assertIsNone(self.cookie.upstream_for(None))

    def test_another_secret_or_route_gives_other_tags(self):
        other_secret = AffinityCookie(b"j" * 32, "chat-ui", [self.a], "/chat")
        other_route = AffinityCookie(b"k" * 32, "api", [self.a], "/")
        self.assertIsNone(other_secret.upstream_for(self.value(self.a)))
        self.assertIsNone(other_route.upstream_for(self.value(self.a)))


class GradioKeyTests(SynchronousTestCase):
    def test_keys_in_paths_and_queries(self):
        self.assertEqual(gradio_keys(b"/gradio_api/heartbeat/abc123", b""), [b"s:abc123"])
        self.assertEqual(gradio_keys(b"/gradio_api/queue/data", b"session_hash=xyz9&x=1"),
                         [b"s:xyz9"])
        self.assertEqual(gradio_keys(b"/gradio_api/call/predict/ev-42", b""), [b"e:ev-42"])
        self.assertEqual(gradio_keys(b"/", b""), [])
        self.assertEqual(gradio_keys(b"/q", b"session_hash=bad%20value"), [])
        self.assertEqual(gradio_keys(b"/q", b"session_hash=\xff"), [])

    def test_the_join_body_and_the_answer(self):
        join = json.dumps({"data": [1], "fn_index": 0, "session_hash": "s3ss"}).encode()
        self.assertEqual(session_hash_from_join(join), b"s:s3ss")
        self.assertEqual(event_id_from_answer(b'{"event_id": "e7"}'), b"e:e7")
        for body in (b"", b"{", b"[1]", b'{"session_hash": 5}', b'{"session_hash": "a b"}',
                     b'{"session_hash": "' + b"x" * MAX_JOIN_BODY + b'"}'):
            self.assertIsNone(session_hash_from_join(body), body[:40])


class SessionsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def test_learnt_then_found(self):
        sessions = Sessions(self.clock)
        sessions.learn(b"s:1", "a")
        self.assertEqual(sessions.lookup(b"s:1"), "a")
        self.assertIsNone(sessions.lookup(b"s:2"))

    def test_forgotten_after_the_ttl_since_last_use(self):
        sessions = Sessions(self.clock, ttl=60)
        sessions.learn(b"s:1", "a")
        self.clock.advance(50)
        self.assertEqual(sessions.lookup(b"s:1"), "a")  # used: 60 s more
        self.clock.advance(59)
        self.assertEqual(sessions.lookup(b"s:1"), "a")
        self.clock.advance(60)
        self.assertIsNone(sessions.lookup(b"s:1"))
        self.assertEqual(len(sessions), 0)

    def test_bounded_least_recently_used_first(self):
        sessions = Sessions(self.clock, max_entries=3)
        for key in (b"s:1", b"s:2", b"s:3"):
            sessions.learn(key, key)
        sessions.lookup(b"s:1")
        sessions.learn(b"s:4", b"s:4")
        self.assertEqual(len(sessions), 3)
        self.assertIsNone(sessions.lookup(b"s:2"))
        self.assertEqual([sessions.lookup(k) for k in (b"s:1", b"s:3", b"s:4")],
                         [b"s:1", b"s:3", b"s:4"])


class UploadedFileTests(SynchronousTestCase):
    def test_upload_answer_paths(self):
        answer = json.dumps(["/tmp/gradio/a/x.txt", "/tmp/gradio/b/y.png"]).encode()
        self.assertEqual(uploaded_files_from_answer(answer),
                         [b"f:/tmp/gradio/a/x.txt", b"f:/tmp/gradio/b/y.png"])
        for other in (b"", b"{}", b"not json", json.dumps([1, None, ""]).encode(),
                      b"[" + b"[" * 5000 + b"]" * 5000 + b"]"):
            self.assertEqual(uploaded_files_from_answer(other), [], other[:20])

    def test_join_names_its_files_anywhere_in_data(self):
        body = json.dumps({"data": ["text", {"path": "/tmp/gradio/a/x.txt"},
                                    [{"nested": {"path": "/tmp/gradio/b/y.png"}}]],
                           "session_hash": "s"}).encode()
        self.assertEqual(sorted(file_keys_from_join(body)),
                         [b"f:/tmp/gradio/a/x.txt", b"f:/tmp/gradio/b/y.png"])
        self.assertEqual(file_keys_from_join(json.dumps({"data": "x"}).encode()), [])
        self.assertEqual(file_keys_from_join(b"x" * 70000), [])

    def test_bounded(self):
        many = json.dumps({"data": [{"path": "/f%d" % i} for i in range(500)]}).encode()
        self.assertEqual(len(file_keys_from_join(many)), 32)
