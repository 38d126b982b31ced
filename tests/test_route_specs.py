"""Routes as the admin API writes and reads them (wighaven.admin.route_specs), and
the configuration's TOML export and import (wighaven.admin.config_io): pure logic."""

from twisted.trial.unittest import SynchronousTestCase

from wighaven.admin.config_io import (
    export_name, export_toml, imported_spec, parse_import, route_table,
)
from wighaven.admin.route_specs import (
    check_spec, route_item, space_url, spec_from_body, writable,
)
from wighaven.config.routes import SEALED_PREFIX, parse_route
from wighaven.web.api_support import ValidationFailed

ENV = {"HF_TOKEN_CHAT": "hf_from_env"}


def seal(text):
    return "box(%s)" % text


def parse(spec):
    return parse_route(spec, ENV, open_sealed=lambda text: text[4:-1], source="store")


class SpecTests(SynchronousTestCase):
    def test_a_token_value_is_sealed_and_reads_back_as_set(self):
        spec = spec_from_body({"name": "chat", "upstreams": [
            {"url": "https://a.example", "token": "hf_secret"}]}, seal)
        self.assertEqual(spec["upstreams"][0]["token"], SEALED_PREFIX + "box(hf_secret)")
        route = check_spec(spec, parse)
        self.assertEqual(route.upstreams[0].token, "hf_secret")
        item = route_item(route, {"version": 1, "created_at": 1.0, "updated_at": 2.0,
                                  "updated_by": "admin"})
        self.assertEqual(item["upstreams"][0]["token"], {"set": True})
        self.assertNotIn("hf_secret", repr(item))
        self.assertEqual(item["version"], 1)

    def test_set_true_keeps_the_token_of_the_same_url(self):
        current = {"name": "chat", "upstreams": [
            {"url": "https://b.example", "token": SEALED_PREFIX + "box(b)"},
            {"url": "https://a.example", "token": SEALED_PREFIX + "box(a)"}]}
        spec = spec_from_body({"name": "chat", "upstreams": [
            {"url": "https://a.example", "token": {"set": True}}]}, seal, current)
        self.assertEqual(spec["upstreams"][0]["token"], SEALED_PREFIX + "box(a)")
        with self.assertRaises(ValidationFailed) as caught:
            spec_from_body({"name": "chat", "upstreams": [
                {"url": "https://c.example", "token": {"set": True}}]}, seal)
        self.assertEqual(caught.exception.errors[0]["field"], "upstreams[0].token")

    def test_references_are_kept_but_never_to_the_gateways_own_secrets(self):
        spec = spec_from_body({"name": "chat", "upstreams": [
            {"url": "https://a.example", "token": "env:HF_TOKEN_CHAT"}]}, seal)
        self.assertEqual(check_spec(spec, parse).upstreams[0].token, "hf_from_env")
        for name in ("SECRET_KEY", "SECRET_KEY_PREVIOUS", "ADMIN_PASSWORD", "METRICS_TOKEN"):
            with self.assertRaises(ValidationFailed):
                spec_from_body({"name": "c", "upstreams": [
                    {"url": "https://a.example", "token": "env:" + name}]}, seal)

    def test_every_bad_field_is_named(self):
        with self.assertRaises(ValidationFailed) as caught:
            spec_from_body({"name": "chat", "colour": "red", "version": 2, "upstreams": [
                {"url": "https://a.example", "wieght": 2}, "nope", {"token": "x\ny"}]}, seal)
        self.assertEqual([e["field"] for e in caught.exception.errors], [
            "colour", "version", "upstreams[0].wieght", "upstreams[1]", "upstreams[2].url",
            "upstreams[2].token"])
        with self.assertRaises(ValidationFailed) as caught:
            check_spec({"name": "chat", "retries": 11,
                        "upstreams": [{"url": "https://a.example"}]}, parse)
        self.assertEqual(caught.exception.errors,
                         [{"field": "retries", "message": "must be a whole number from 0 to 10"}])

    def test_a_space_by_repo_id(self):
        self.assertEqual(space_url("Some_User/My.Space"), "https://some-user-my-space.hf.space")
        spec = spec_from_body({"name": "x", "upstreams": [{"space": "user/chat"}]}, seal)
        self.assertEqual(spec["upstreams"][0], {"url": "https://user-chat.hf.space",
                                                "space": "user/chat"})

    def test_writable_leaves_out_what_the_gateway_sets(self):
        item = {"name": "x", "source": "store", "version": 3, "etag": '"e"', "retries": 1}
        self.assertEqual(writable(item), {"name": "x", "retries": 1})


class ConfigIoTests(SynchronousTestCase):
    def stored(self):
        return parse({"name": "chat", "path": "/chat", "retries": 2, "access": ["role:team"],
                      "upstreams": [{"url": "https://a.example",
                                     "token": SEALED_PREFIX + "box(secret-a)"},
                                    {"url": "https://b.example", "token": "env:HF_TOKEN_CHAT",
                                     "weight": 3}]})

    def test_export_has_references_never_values(self):
        text = export_toml([self.stored()])
        self.assertNotIn("secret-a", text)
        self.assertNotIn("hf_from_env", text)
        self.assertIn('token = "env:%s"' % export_name("chat", 0), text)
        self.assertIn('token = "env:HF_TOKEN_CHAT"', text)
        [table] = parse_import(text.encode())
        self.assertEqual(table, route_table(self.stored()))
        self.assertEqual(table["access"], ["role:team"])
        self.assertNotIn("strip_path", table)  # defaults are left out

    def test_import_keeps_the_sealed_token_of_an_exported_name(self):
        current = {"name": "chat", "upstreams": [
            {"url": "https://a.example", "token": SEALED_PREFIX + "box(secret-a)"}]}
        table = {"name": "chat", "upstreams": [
            {"url": "https://a.example", "token": "env:WIGHAVEN_TOKEN_CHAT_1"}]}
        self.assertEqual(imported_spec(table, current, {})["upstreams"][0]["token"],
                         SEALED_PREFIX + "box(secret-a)")
        # With the variable set, the variable wins: the new gateway's own token.
        self.assertEqual(imported_spec(table, current, {"WIGHAVEN_TOKEN_CHAT_1": "t"})[
            "upstreams"][0]["token"], "env:WIGHAVEN_TOKEN_CHAT_1")

    def test_bad_imports_are_refused_with_the_field(self):
        for data, field in ((b"routes = 3", "routes"), (b"[x]\na = 1", "x"),
                            (b'[[routes]]\nname = "a"\n[[routes]]\nname = "a"',
                             "routes[1].name"), (b"not toml [", "")):
            with self.assertRaises(ValidationFailed) as caught:
                parse_import(data)
            self.assertEqual(caught.exception.errors[0]["field"], field)
