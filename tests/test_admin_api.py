"""The admin API over real sockets: a gateway with AUTH=on in this process,
a TLS backend (the test CA), the store a real SQLite file. Routes made,
changed and removed live; ETags and If-Match; 422 field errors; read-only
file routes; forgery checks; tokens sealed at rest and never read back;
users, invitations, API keys, sessions, the audit trail, export and import,
the recent requests and log lines."""

import json
import os

from twisted.internet import defer
from twisted.trial import unittest

from wighaven.store import sqlite_path

from tests.support.backend import start_backend
from tests.support.gateway import TOKEN
from tests.test_auth_integration import (
    ADMIN_PASSWORD, ALICE_PASSWORD, AuthGateway, ORIGIN_HEADER, session_cookie,
)

API = "/_gateway/api/v1"
SPACE_TOKEN = "hf_space_token_Z9y8x7w6v5u4t3s2r1q0"


class AdminApiTestCase(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, _, self.backend_origin = yield start_backend(self)
        self.gateway = yield AuthGateway(self, self.backend_origin,
                                         **self.settings()).start()
        reply = yield self.gateway.token("admin", ADMIN_PASSWORD)
        self.admin = {"Authorization": "Bearer " + reply.json()["access_token"]}

    def settings(self):
        return {"ALLOW_PRIVATE_UPSTREAMS": "true"}

    def api(self, method, path, body=None, headers=None, credentials=None):
        sent = dict(self.admin if credentials is None else credentials)
        sent.update(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        return self.gateway.fetch(method, API + path, sent, data)

    def route_body(self, name="chat", path="/chat", token=SPACE_TOKEN, **more):
        body = {"name": name, "path": path,
                "upstreams": [{"url": self.backend_origin, "token": token}]}
        body.update(more)
        return body

    @defer.inlineCallbacks
    def add_route(self, **kwargs):
        reply = yield self.api("POST", "/routes", self.route_body(**kwargs))
        self.assertEqual(reply.status, 201, reply.body)
        return reply


class GuardTests(AdminApiTestCase):
    @defer.inlineCallbacks
    def test_only_administrators_get_in(self):
        reply = yield self.api("GET", "/routes", credentials={})
        self.assertEqual(reply.status, 401)
        self.assertEqual(reply.json()["error"], "unauthorized")
        self.assertIn("Bearer", reply.get("WWW-Authenticate"))
        self.gateway.add_user("alice", ALICE_PASSWORD, roles=["team"])
        token = yield self.gateway.token("alice", ALICE_PASSWORD)
        reply = yield self.api("GET", "/routes", credentials={
            "Authorization": "Bearer " + token.json()["access_token"]})
        self.assertEqual(reply.status, 403)
        # The panel: a browser that has not signed in goes to the sign-in page.
        reply = yield self.gateway.fetch("GET", "/_gateway/admin/", {"Accept": "text/html"})
        self.assertEqual(reply.status, 303)
        self.assertEqual(reply.get("Location"), "/_gateway/login?next=%2F_gateway%2Fadmin%2F")

    @defer.inlineCallbacks
    def test_a_cookie_change_needs_the_csrf_token_and_the_same_origin(self):
        signed_in = yield self.gateway.sign_in("admin", ADMIN_PASSWORD)
        cookie = {"Cookie": session_cookie(signed_in)}
        reply = yield self.api("GET", "/routes", credentials=cookie)
        self.assertEqual(reply.status, 200)
        reply = yield self.api("POST", "/routes", self.route_body(), credentials=cookie)
        self.assertEqual(reply.status, 403)
        self.assertEqual(reply.json()["error"], "csrf")
        csrf = yield self.gateway.fetch("GET", "/_gateway/auth/csrf", cookie)
        with_token = dict(cookie, **{"X-CSRF-Token": csrf.json()["csrf"]})
        reply = yield self.api("POST", "/routes", self.route_body(), credentials=dict(
            with_token, **{ORIGIN_HEADER: "https://evil.example"}))
        self.assertEqual(reply.status, 403)
        reply = yield self.api("POST", "/routes", self.route_body(), credentials=dict(
            with_token, **{ORIGIN_HEADER: self.gateway.origin}))
        self.assertEqual(reply.status, 201, reply.body)

    @defer.inlineCallbacks
    def test_bad_bodies_get_clear_4xx(self):
        reply = yield self.api("POST", "/routes", b"{}", {"Content-Type": "text/plain"})
        self.assertEqual(reply.status, 415)
        reply = yield self.api("POST", "/routes", b"{not json")
        self.assertEqual(reply.status, 400)
        reply = yield self.api("POST", "/routes", b"[1, 2]")
        self.assertEqual(reply.status, 422)
        reply = yield self.api("GET", "/routes?limit=0")
        self.assertEqual(reply.status, 422)
        self.assertEqual(reply.json()["errors"][0]["field"], "limit")
        reply = yield self.api("GET", "/routes?cursor=forged")
        self.assertEqual(reply.status, 422)
        reply = yield self.api("GET", "/no-such-thing")
        self.assertEqual(reply.status, 404)


class RouteTests(AdminApiTestCase):
    @defer.inlineCallbacks
    def test_a_route_made_through_the_api_serves_the_next_request(self):
        reply = yield self.gateway.fetch("GET", "/chat/echo", self.admin)
        before = len(self.backend.requests)
        reply = yield self.add_route()
        item = reply.json()
        self.assertEqual(item["source"], "store")
        self.assertEqual(item["upstreams"][0]["token"], {"set": True})
        self.assertNotIn(SPACE_TOKEN, reply.body.decode())
        self.assertEqual(reply.get("ETag"), item["etag"])
        self.assertEqual(reply.get("Location"), API + "/routes/chat")
        reply = yield self.gateway.fetch("GET", "/chat/echo", self.admin)
        self.assertEqual(reply.status, 200, reply.body)
        seen = self.backend.requests[before:]
        self.assertEqual(seen[-1]["uri"], b"/echo")  # strip_path
        self.assertIn(["Authorization", "Bearer " + SPACE_TOKEN], seen[-1]["headers"])

    @defer.inlineCallbacks
    def test_list_has_the_environment_route_read_only(self):
        yield self.add_route()
        reply = yield self.api("GET", "/routes")
        self.assertEqual(reply.status, 200)
        items = {item["name"]: item for item in reply.json()["items"]}
        self.assertEqual(items["default"]["source"], "env")
        self.assertEqual(items["chat"]["source"], "store")
        self.assertIsNone(reply.json()["next_cursor"])
        self.assertNotIn(TOKEN, reply.body.decode())
        reply = yield self.api("PATCH", "/routes/default", {"retries": 1})
        self.assertEqual(reply.status, 409)
        self.assertEqual(reply.json()["error"], "read_only")
        reply = yield self.api("DELETE", "/routes/default")
        self.assertEqual(reply.status, 409)
        page = yield self.api("GET", "/routes?limit=1")
        self.assertEqual(len(page.json()["items"]), 1)
        rest = yield self.api("GET", "/routes?limit=1&cursor=" + page.json()["next_cursor"])
        self.assertEqual([i["name"] for i in page.json()["items"] + rest.json()["items"]],
                         ["chat", "default"])

    @defer.inlineCallbacks
    def test_a_stale_if_match_changes_nothing(self):
        created = yield self.add_route()
        etag = created.get("ETag")
        first = yield self.api("PATCH", "/routes/chat", {"retries": 2}, {"If-Match": etag})
        self.assertEqual(first.status, 200, first.body)
        self.assertEqual(first.json()["retries"], 2)
        self.assertNotEqual(first.get("ETag"), etag)
        second = yield self.api("PATCH", "/routes/chat", {"retries": 3}, {"If-Match": etag})
        self.assertEqual(second.status, 412)
        gone = yield self.api("DELETE", "/routes/chat", headers={"If-Match": etag})
        self.assertEqual(gone.status, 412)
        now = yield self.api("GET", "/routes/chat")
        self.assertEqual(now.json()["retries"], 2)
        removed = yield self.api("DELETE", "/routes/chat", headers={"If-Match": now.get("ETag")})
        self.assertEqual(removed.status, 204)
        reply = yield self.api("GET", "/routes/chat")
        self.assertEqual(reply.status, 404)
        reply = yield self.gateway.fetch("GET", "/chat/echo", self.admin)
        self.assertEqual(self.backend.requests[-1]["uri"], b"/chat/echo")  # the default route

    @defer.inlineCallbacks
    def test_a_patch_keeps_the_token_and_a_new_one_replaces_it(self):
        yield self.add_route()
        reply = yield self.api("PATCH", "/routes/chat", {"enabled": False})
        self.assertEqual(reply.json()["upstreams"][0]["token"], {"set": True})
        reply = yield self.gateway.fetch("GET", "/chat/echo", self.admin)
        self.assertEqual(reply.status, 503)
        self.assertEqual(reply.json()["error"], "route_disabled")
        reply = yield self.api("PATCH", "/routes/chat", {"enabled": True, "upstreams": [
            {"url": self.backend_origin, "token": "hf_rotated_token_0123456789"}]})
        self.assertEqual(reply.status, 200, reply.body)
        yield self.gateway.fetch("GET", "/chat/echo", self.admin)
        self.assertIn(["Authorization", "Bearer hf_rotated_token_0123456789"],
                      self.backend.requests[-1]["headers"])

    @defer.inlineCallbacks
    def test_validation_errors_name_their_fields(self):
        body = self.route_body(upstreams=[
            {"url": self.backend_origin}, {"url": "http://elsewhere.example"}])
        reply = yield self.api("POST", "/routes", body)
        self.assertEqual(reply.status, 422)
        self.assertEqual(reply.json()["errors"], [
            {"field": "upstreams[1].url", "message": "The upstream URL must start with https://."}])
        reply = yield self.api("POST", "/routes", self.route_body(name="Bad Name"))
        self.assertEqual(reply.json()["errors"][0]["field"], "name")
        reply = yield self.api("POST", "/routes", self.route_body(retries=99, version=3))
        fields = [e["field"] for e in reply.json()["errors"]]
        self.assertEqual(fields, ["version"])
        reply = yield self.api("POST", "/routes", self.route_body(retries=99))
        self.assertEqual(reply.json()["errors"], [
            {"field": "retries", "message": "must be a whole number from 0 to 10"}])
        reply = yield self.api("POST", "/routes", self.route_body(token="env:SECRET_KEY"))
        self.assertEqual(reply.json()["errors"][0]["field"], "upstreams[0].token")
        reply = yield self.api("POST", "/routes", self.route_body(path="/"))
        self.assertEqual(reply.status, 422)  # the environment's route is at / already
        self.assertEqual(reply.json()["errors"][0]["field"], "path")
        yield self.add_route()
        reply = yield self.api("POST", "/routes", self.route_body(path="/other"))
        self.assertEqual(reply.status, 409)

    @defer.inlineCallbacks
    def test_a_space_by_its_repo_id(self):
        reply = yield self.api("POST", "/routes", {"name": "x", "path": "/x", "upstreams": [
            {"space": "Some_User/My.Space"}]})
        # The URL is the Space's own: an address this test cannot reach, but a valid one.
        self.assertIn(reply.status, (201, 422), reply.body)
        if reply.status == 201:
            self.assertEqual(reply.json()["upstreams"][0]["url"],
                             "https://some-user-my-space.hf.space")
        else:
            self.assertEqual(reply.json()["errors"][0]["field"], "upstreams[0].url")

    @defer.inlineCallbacks
    def test_tokens_are_sealed_at_rest_and_routes_survive_a_restart(self):
        yield self.add_route()
        path = sqlite_path(self.gateway.database_url)
        for name in (path, path + "-wal"):
            if os.path.exists(name):
                with open(name, "rb") as f:
                    self.assertNotIn(SPACE_TOKEN.encode(), f.read())
        yield self.gateway.service.stopService()
        again = yield AuthGateway(self, self.backend_origin, **self.settings())
        again.env["DATABASE_URL"] = self.gateway.database_url
        yield again.start()
        reply = yield again.fetch("GET", "/chat/echo", self.admin)
        self.assertEqual(reply.status, 200, reply.body)
        self.assertIn(["Authorization", "Bearer " + SPACE_TOKEN],
                      self.backend.requests[-1]["headers"])

    @defer.inlineCallbacks
    def test_test_connection_says_status_and_time(self):
        reply = yield self.api("POST", "/upstreams/test", {
            "url": self.backend_origin, "token": SPACE_TOKEN, "path": "/status/204"})
        self.assertEqual(reply.status, 200, reply.body)
        outcome = reply.json()
        self.assertEqual((outcome["ok"], outcome["status"], outcome["error"]), (True, 204, None))
        self.assertGreater(outcome["duration_ms"], 0)
        self.assertIn(["Authorization", "Bearer " + SPACE_TOKEN],
                      self.backend.requests[-1]["headers"])
        reply = yield self.api("POST", "/upstreams/test", {"url": "https://127.0.0.1:1"})
        self.assertEqual(reply.json()["ok"], False)
        self.assertEqual(reply.json()["error"], "the connection was refused")
        yield self.add_route()
        reply = yield self.api("POST", "/upstreams/test", {"route": "chat", "upstream": 0})
        self.assertEqual(reply.json()["status"], 200)
        for bad in (None, -1, True, "0"):  # an index, whichever way the upstream is given
            for given in ({"route": "chat"}, {"url": self.backend_origin}):
                reply = yield self.api("POST", "/upstreams/test", dict(given, upstream=bad))
                self.assertEqual(reply.status, 422, (given, bad, reply.body))
                self.assertEqual(reply.json()["errors"][0]["field"], "upstream")
        self.assertIn(["Authorization", "Bearer " + SPACE_TOKEN],
                      self.backend.requests[-1]["headers"])


    @defer.inlineCallbacks
    def test_a_token_no_header_can_carry_is_a_field_error(self):
        # With a health probe, which sends it too: it was stored, then failed to apply
        # (500 not_applied; schemathesis found it).
        for token in ("hf_t\u00f6ken", "two words"):
            reply = yield self.api("POST", "/routes", self.route_body(
                token=token, health_path="/echo/health"))
            self.assertEqual(reply.status, 422, reply.body)
            self.assertEqual(reply.json()["errors"][0]["field"], "upstreams[0].token")
            self.assertNotIn(token, reply.body.decode("unicode_escape"))
        listed = yield self.api("GET", "/routes")
        self.assertNotIn("chat", [item["name"] for item in listed.json()["items"]])

    @defer.inlineCallbacks
    def test_a_clash_with_another_process_change_not_yet_seen_is_refused_in_the_store(self):
        """
        Another process (a worker, the console) stored a route this gateway has
        not applied yet: a new route taking the same path passes the check on
        this gateway's table, and is refused inside the store's transaction
        (422, nothing stored), instead of being saved and then failing to apply.
        """
        self.gateway.service.reloader.stop()  # this gateway does not see it yet
        self.gateway.store().add_route("elsewhere", {
            "name": "elsewhere", "path": "/clash",
            "upstreams": [{"url": self.backend_origin}]})
        reply = yield self.api("POST", "/routes", self.route_body(name="here", path="/clash"))
        self.assertEqual(reply.status, 422, reply.body)
        self.assertEqual(reply.json()["errors"][0]["field"], "path")
        self.assertIn("/clash", reply.json()["errors"][0]["message"])
        self.assertEqual([r["name"] for r in self.gateway.store().routes()], ["elsewhere"])
        reply = yield self.api("POST", "/config/import", (
            '[[routes]]\nname = "elsewhere"\npath = "/clash"\n\n[[routes.upstreams]]\n'
            'url = "%s"\n\n[[routes]]\nname = "here"\npath = "/clash"\n\n'
            '[[routes.upstreams]]\nurl = "%s"\n' % (self.backend_origin, self.backend_origin)
        ).encode(), {"Content-Type": "application/toml"})
        self.assertEqual(reply.status, 422, reply.body)
        # This gateway's own view catches up: the stored route is served.
        self.assertTrue(self.gateway.service.reloader.apply_stored())
        reply = yield self.gateway.fetch("GET", "/clash/echo", self.admin)
        self.assertEqual(reply.status, 200)


class ForgeryTests(AdminApiTestCase):
    def settings(self):
        return {}  # ALLOW_PRIVATE_UPSTREAMS off: the default

    @defer.inlineCallbacks
    def test_private_and_metadata_addresses_are_refused(self):
        for url, message in (
                ("https://127.0.0.1:8443", "The upstream's address is a loopback address"),
                ("https://169.254.169.254", "The upstream's address is the cloud metadata"),
                ("https://localhost:8443", "The host name resolves to a loopback address")):
            reply = yield self.api("POST", "/routes", self.route_body(
                upstreams=[{"url": url, "token": SPACE_TOKEN}]))
            self.assertEqual(reply.status, 422, url)
            error = reply.json()["errors"][0]
            self.assertEqual(error["field"], "upstreams[0].url")
            self.assertTrue(error["message"].startswith(message), error["message"])
        reply = yield self.api("POST", "/upstreams/test", {"url": "https://10.1.2.3"})
        self.assertEqual(reply.status, 422)


class PeopleTests(AdminApiTestCase):
    @defer.inlineCallbacks
    def test_a_user_made_here_signs_in_and_is_disabled_here(self):
        reply = yield self.api("POST", "/users", {"username": "bob", "password": "bob-pass-123",
                                                  "roles": ["team"]})
        self.assertEqual(reply.status, 201, reply.body)
        self.assertEqual(reply.json()["password"], {"set": True})
        self.assertNotIn("bob-pass-123", reply.body.decode())
        token = yield self.gateway.token("bob", "bob-pass-123")
        self.assertEqual(token.status, 200)
        bob = {"Authorization": "Bearer " + token.json()["access_token"]}
        reply = yield self.gateway.fetch("GET", "/echo", bob)
        self.assertEqual(reply.status, 200)
        reply = yield self.api("PATCH", "/users/bob", {"disabled": True})
        self.assertEqual(reply.json()["disabled"], True)
        reply = yield self.gateway.fetch("GET", "/echo", bob)
        self.assertEqual(reply.status, 401)
        reply = yield self.api("POST", "/users", {"username": "bob"})
        self.assertEqual(reply.status, 409)
        reply = yield self.api("POST", "/users", {"username": "x", "password": "short"})
        self.assertEqual(reply.json()["errors"][0]["field"], "password")
        # A name, a role or a route's name ending in a line break is not one.
        reply = yield self.api("POST", "/users", {"username": "eve\n"})
        self.assertEqual(reply.json()["errors"][0]["field"], "username")
        reply = yield self.api("POST", "/users", {"username": "eve", "roles": ["team\n"]})
        self.assertEqual(reply.json()["errors"][0]["field"], "roles")
        reply = yield self.api("POST", "/routes", self.route_body(name="chat\n"))
        self.assertEqual(reply.json()["errors"][0]["field"], "name")

    @defer.inlineCallbacks
    def test_an_admin_cannot_lock_themselves_out(self):
        for patch in ({"disabled": True}, {"roles": []}):
            reply = yield self.api("PATCH", "/users/admin", patch)
            self.assertEqual(reply.status, 409)
        reply = yield self.api("DELETE", "/users/admin")
        self.assertEqual(reply.status, 409)

    @defer.inlineCallbacks
    def test_an_invitation_sets_a_password_once(self):
        yield self.api("POST", "/users", {"username": "carol"})
        reply = yield self.api("POST", "/users/carol/invite", {"expires_in": 3600})
        self.assertEqual(reply.status, 201, reply.body)
        link = reply.json()["url"]
        self.assertTrue(link.startswith(self.gateway.origin + "/_gateway/invite?token="))
        target = link[len(self.gateway.origin):]
        page = yield self.gateway.fetch("GET", target)
        self.assertEqual(page.status, 200)
        self.assertIn(b"carol", page.body)
        token = target.split("token=", 1)[1]
        form = ("token=%s&password=carol-pass-1&confirm=carol-pass-1" % token).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   ORIGIN_HEADER: self.gateway.origin}
        done = yield self.gateway.fetch("POST", "/_gateway/invite", headers, form)
        self.assertEqual(done.status, 200, done.body)
        signed_in = yield self.gateway.token("carol", "carol-pass-1")
        self.assertEqual(signed_in.status, 200)
        again = yield self.gateway.fetch("POST", "/_gateway/invite", headers, form)
        self.assertEqual(again.status, 410)
        audit = yield self.api("GET", "/audit?kind=invite.used")
        self.assertEqual([e["actor"] for e in audit.json()["items"]], ["carol"])

    @defer.inlineCallbacks
    def test_a_key_is_shown_once_works_and_is_revoked(self):
        yield self.add_route()
        reply = yield self.api("POST", "/api-keys", {"name": "ci", "route": "chat",
                                                     "expires_in_days": 30})
        self.assertEqual(reply.status, 201, reply.body)
        created = reply.json()
        key = created.pop("key")
        self.assertTrue(key.startswith("wh_"))
        listed = yield self.api("GET", "/api-keys")
        self.assertNotIn(key, listed.body.decode())
        self.assertEqual(listed.json()["items"][0]["route"], "chat")
        used = yield self.gateway.fetch("GET", "/chat/echo", {"Authorization": "Bearer " + key})
        self.assertEqual(used.status, 200)
        other = yield self.gateway.fetch("GET", "/echo", {"Authorization": "Bearer " + key})
        self.assertEqual(other.status, 403)  # scoped to chat
        reply = yield self.api("DELETE", "/api-keys/" + created["id"])
        self.assertEqual(reply.status, 204)
        used = yield self.gateway.fetch("GET", "/chat/echo", {"Authorization": "Bearer " + key})
        self.assertEqual(used.status, 401)
        # Deleted as far as the API goes: not read, not listed, not revoked twice.
        item = yield self.api("GET", "/api-keys/" + created["id"])
        self.assertEqual(item.status, 404)
        listed = yield self.api("GET", "/api-keys")
        self.assertEqual(listed.json()["items"], [])
        again = yield self.api("DELETE", "/api-keys/" + created["id"])
        self.assertEqual(again.status, 404)
        # The store keeps it refused, and the audit trail keeps its story.
        audit = yield self.api("GET", "/audit?kind=key.revoked")
        self.assertEqual(audit.json()["items"][0]["detail"]["key"], created["id"])

    @defer.inlineCallbacks
    def test_sessions_are_listed_and_revoked(self):
        self.gateway.add_user("alice", ALICE_PASSWORD)
        signed_in = yield self.gateway.sign_in("alice", ALICE_PASSWORD)
        cookie = {"Cookie": session_cookie(signed_in)}
        reply = yield self.gateway.fetch("GET", "/echo", cookie)
        self.assertEqual(reply.status, 200)
        sessions = yield self.api("GET", "/sessions?user=alice")
        [session] = sessions.json()["items"]
        self.assertEqual(session["user"], "alice")
        reply = yield self.api("DELETE", "/sessions/" + session["id"])
        self.assertEqual(reply.status, 204)
        reply = yield self.gateway.fetch("GET", "/echo", cookie)
        self.assertEqual(reply.status, 401)


class AuditTests(AdminApiTestCase):
    @defer.inlineCallbacks
    def test_every_change_is_audited_with_secrets_masked(self):
        yield self.add_route()
        yield self.api("PATCH", "/routes/chat", {"retries": 1})
        yield self.api("DELETE", "/routes/chat")
        reply = yield self.api("GET", "/audit?actor=admin")
        self.assertNotIn(SPACE_TOKEN, reply.body.decode())
        events = reply.json()["items"]
        kinds = [e["kind"] for e in events]
        self.assertEqual(kinds[:3], ["route.deleted", "route.updated", "route.created"])
        updated = events[1]
        self.assertEqual(updated["source"], "127.0.0.1")
        self.assertEqual((updated["detail"]["before"]["retries"],
                          updated["detail"]["after"]["retries"]), (0, 1))
        self.assertEqual(updated["detail"]["after"]["upstreams"][0]["token"], {"set": True})
        self.assertIn("login.succeeded", kinds)
        only = yield self.api("GET", "/audit?kind=route.created&limit=1")
        self.assertEqual([e["kind"] for e in only.json()["items"]], ["route.created"])
        every = yield self.api("GET", "/audit")
        page = yield self.api("GET", "/audit?limit=2")
        rest = yield self.api("GET", "/audit?limit=50&cursor=" + page.json()["next_cursor"])
        self.assertEqual([e["id"] for e in page.json()["items"] + rest.json()["items"]],
                         [e["id"] for e in every.json()["items"]])
        self.assertEqual(len(every.json()["items"]), len(events) + 1)  # + ADMIN_USERNAME's


class ConfigTests(AdminApiTestCase):
    @defer.inlineCallbacks
    def test_export_names_references_and_import_diffs_then_applies(self):
        yield self.add_route()
        exported = yield self.api("GET", "/config/export")
        self.assertEqual(exported.status, 200)
        text = exported.body.decode()
        self.assertNotIn(SPACE_TOKEN, text)
        self.assertIn('token = "env:WIGHAVEN_TOKEN_CHAT_1"', text)
        self.assertNotIn('name = "default"', text)
        changed = text.replace('path = "/chat"', 'path = "/talk"') + (
            '\n[[routes]]\nname = "extra"\npath = "/extra"\n\n[[routes.upstreams]]\n'
            'url = "%s"\n' % self.backend_origin)
        toml = {"Content-Type": "application/toml"}
        preview = yield self.api("POST", "/config/import?dry_run=true", changed.encode(), toml)
        self.assertEqual(preview.status, 200, preview.body)
        self.assertEqual(preview.json(), {"dry_run": True, "added": ["extra"],
                                          "changed": ["chat"], "removed": [], "unchanged": []})
        reply = yield self.gateway.fetch("GET", "/talk/echo", self.admin)
        self.assertEqual(self.backend.requests[-1]["uri"], b"/talk/echo")  # not applied
        applied = yield self.api("POST", "/config/import", changed.encode(), toml)
        self.assertEqual(applied.json()["dry_run"], False)
        reply = yield self.gateway.fetch("GET", "/talk/echo", self.admin)
        self.assertEqual(reply.status, 200)
        self.assertEqual(self.backend.requests[-1]["uri"], b"/echo")
        self.assertIn(["Authorization", "Bearer " + SPACE_TOKEN],
                      self.backend.requests[-1]["headers"])  # the sealed token was kept
        emptied = yield self.api("POST", "/config/import?dry_run=true", b"", toml)
        self.assertEqual(emptied.json()["removed"], ["chat", "extra"])
        bad = yield self.api("POST", "/config/import", b"routes = 3", toml)
        self.assertEqual(bad.status, 422)


    @defer.inlineCallbacks
    def test_an_administrators_import_may_be_larger_than_other_bodies(self):
        """
        A config file of 200 routes (over 16 KiB, the most of any other body
        the gateway answers itself) imports, exports and imports again; from
        anyone but an administrator, or over 1 MiB, it is refused before its
        body is read.
        """
        from tests.support.client import raw

        routes = "".join(
            '[[routes]]\nname = "r%03d"\npath = "/r%03d"\n\n[[routes.upstreams]]\nurl = "%s"\n\n'
            % (i, i, self.backend_origin) for i in range(200)).encode()
        self.assertGreater(len(routes), 16 * 1024)
        toml = {"Content-Type": "application/toml"}
        preview = yield self.api("POST", "/config/import?dry_run=true", routes, toml)
        self.assertEqual(preview.status, 200, preview.body[:300])
        self.assertEqual(len(preview.json()["added"]), 200)
        applied = yield self.api("POST", "/config/import", routes, toml)
        self.assertEqual(applied.status, 200, applied.body[:300])
        reply = yield self.gateway.fetch("GET", "/r199/echo", self.admin)
        self.assertEqual(reply.status, 200)
        exported = yield self.api("GET", "/config/export")
        self.assertGreater(len(exported.body), 16 * 1024)
        again = yield self.api("POST", "/config/import?dry_run=true", exported.body, toml)
        self.assertEqual(again.status, 200, again.body[:300])
        self.assertEqual((again.json()["added"], again.json()["changed"], again.json()["removed"],
                          len(again.json()["unchanged"])), ([], [], [], 200))

        def head(credentials, length):
            lines = ["POST %s/config/import?dry_run=true HTTP/1.1" % API, "Host: 127.0.0.1",
                     "Content-Type: application/toml", "Content-Length: %d" % length]
            lines += ["%s: %s" % item for item in credentials.items()]
            return ("\r\n".join(lines) + "\r\n\r\n").encode()

        self.gateway.add_user("bob", ALICE_PASSWORD, roles=["team"])
        reply = yield self.gateway.token("bob", ALICE_PASSWORD)
        bob = {"Authorization": "Bearer " + reply.json()["access_token"]}
        for credentials in (bob, {}):
            answer = yield raw(self.gateway.port, head(credentials, len(routes)))
            self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:200])
        answer = yield raw(self.gateway.port, head(self.admin, (1 << 20) + 1))
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:200])
        # Chunked, with no length told: cut at the same limits as it comes.
        chunked = head(bob, 0).replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
        answer = yield raw(self.gateway.port, chunked + b"%x\r\n" % len(routes) + routes + b"\r\n0\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:200])


class RecentTests(AdminApiTestCase):
    @defer.inlineCallbacks
    def test_recent_requests_logs_and_status(self):
        # twistd (and each worker) feeds the ring through the observer it logs
        # with; a gateway built in a test logs through the global publisher.
        from wighaven.observe.logs import feed_log_ring

        feed_log_ring("info")
        yield self.add_route()
        for _ in range(3):
            yield self.gateway.fetch("GET", "/chat/echo", self.admin)
        reply = yield self.api("GET", "/requests?route=chat&status_class=2xx")
        self.assertEqual(reply.status, 200)
        items = reply.json()["items"]
        self.assertEqual(len(items), 3)
        self.assertEqual(items[0]["user"], "admin")
        self.assertNotIn(self.admin["Authorization"][7:], reply.body.decode())
        one = yield self.api("GET", "/requests/%d" % items[0]["id"])
        headers = dict((n.lower(), v) for n, v in one.json()["request_headers"])
        self.assertEqual(headers["authorization"], "[redacted]")
        logs = yield self.api("GET", "/logs?text=stored+routes+applied")
        self.assertTrue(logs.json()["items"], logs.body)
        last = logs.json()["last_id"]
        newer = yield self.api("GET", "/logs?after=%d" % last)
        # Only lines after it: the access line of the request above, say.
        self.assertTrue(all(line["id"] > last for line in newer.json()["items"]))
        self.assertGreaterEqual(newer.json()["last_id"], last)
        status = yield self.api("GET", "/status")
        routes = {r["name"]: r for r in status.json()["routes"]}
        self.assertEqual(routes["chat"]["requests"], 3)
        self.assertEqual(routes["chat"]["upstreams"][0]["state"], "up")
        self.assertEqual(routes["chat"]["source"], "store")

    @defer.inlineCallbacks
    def test_a_log_line_quoting_a_token_is_read_redacted(self):
        from twisted.logger import Logger

        from wighaven.observe.logs import feed_log_ring

        feed_log_ring("info")
        yield self.add_route()
        # Nothing the gateway logs holds a token; were one ever quoted (a
        # backend's error echoing a header, say), the Logs screen hides it:
        # the environment route's token and the one just stored alike.
        Logger(namespace="wighaven.test").info(
            "quoting {a} and {b}", a=TOKEN, b=SPACE_TOKEN)
        reply = yield self.api("GET", "/logs?text=quoting")
        self.assertEqual([line["text"] for line in reply.json()["items"]],
                         ["quoting [redacted] and [redacted]"])


class MethodTests(AdminApiTestCase):
    @defer.inlineCallbacks
    def test_another_method_is_405_with_allow(self):
        for method, path, allow in (("TRACE", "/status", "GET, HEAD"),
                                    ("PUT", "/routes/x", "DELETE, GET, HEAD, PATCH"),
                                    ("DELETE", "/routes", "GET, HEAD, POST")):
            reply = yield self.api(method, path)
            self.assertEqual(reply.status, 405, (method, path, reply.body))
            self.assertEqual(reply.get("Allow"), allow)
            self.assertEqual(reply.json()["error"], "method_not_allowed")
