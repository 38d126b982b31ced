"""AUTH and its settings (wighaven.config.auth_settings), through
wighaven.config.settings.load_config, and the route file's `access` key."""

import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from wighaven.auth.passwords import hash_password
from wighaven.auth.policy import PUBLIC, SIGNED_IN, parse_access
from wighaven.config.settings import ConfigError, load_config

BACKEND = "https://user-space.hf.space"
SECRET = "S" * 32
PREVIOUS = "P" * 40
METRICS = "M" * 16
PASSWORD = "hunter2-but-longer"


def env(**settings):
    values = {"PRIVATE_BACKEND_URL": BACKEND}
    values.update(settings)
    return values


def on(**settings):
    values = {"AUTH": "on", "SECRET_KEY": SECRET}
    values.update(settings)
    return env(**values)


class ConfigErrorAssertions:
    def assertRefused(self, environment, *fragments, absent=()):
        with self.assertRaises(ConfigError) as caught:
            load_config(environment)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        for secret in absent:
            self.assertNotIn(secret, message)
        return message


class EnabledTests(SynchronousTestCase, ConfigErrorAssertions):
    def test_off_by_default_needs_nothing(self):
        auth = load_config(env()).auth
        self.assertFalse(auth.enabled)
        self.assertIsNone(auth.secret_key)
        self.assertIsNone(auth.hf)
        self.assertIsNone(auth.public_url)
        self.assertIs(auth.access, SIGNED_IN)
        self.assertEqual(auth.database_url, "sqlite:///data/wighaven.sqlite3")
        self.assertEqual((auth.jwt_ttl, auth.refresh_ttl, auth.session_ttl),
                         (900, 2592000, 604800))

    def test_off_ignores_a_short_secret(self):
        self.assertFalse(load_config(env(AUTH="off", SECRET_KEY="short")).auth.enabled)

    def test_bad_auth_value(self):
        self.assertRefused(env(AUTH="maybe"), "AUTH must be true or false", "maybe")

    def test_on_needs_secret_key(self):
        self.assertRefused(env(AUTH="on"), "AUTH=on needs SECRET_KEY of at least 32 characters")
        self.assertRefused(env(AUTH="on", SECRET_KEY="   "), "SECRET_KEY")

    def test_on_refuses_short_secret_key_without_echoing_it(self):
        self.assertRefused(env(AUTH="on", SECRET_KEY="x" * 31), "SECRET_KEY", "32",
                           absent=["x" * 31])

    def test_on_with_secret_key(self):
        for value in ("on", "true", "1", "yes", " ON "):
            auth = load_config(env(AUTH=value, SECRET_KEY=SECRET)).auth
            self.assertTrue(auth.enabled, value)
            self.assertEqual(auth.secret_key, SECRET)

    def test_secret_key_stripped(self):
        self.assertEqual(load_config(on(SECRET_KEY="  %s  " % SECRET)).auth.secret_key, SECRET)

    def test_secret_key_must_be_one_line(self):
        self.assertRefused(on(SECRET_KEY=SECRET + "\n" + SECRET), "SECRET_KEY must be a single line",
                           absent=[SECRET])
        self.assertRefused(on(SECRET_KEY=SECRET + "\x00x"), "SECRET_KEY must be a single line")

    def test_secret_key_previous(self):
        auth = load_config(on(SECRET_KEY_PREVIOUS=" %s , %s ," % (PREVIOUS, "Q" * 32))).auth
        self.assertEqual(auth.secret_key_previous, (PREVIOUS, "Q" * 32))
        self.assertEqual(load_config(on()).auth.secret_key_previous, ())

    def test_short_secret_key_previous_refused(self):
        self.assertRefused(on(SECRET_KEY_PREVIOUS=PREVIOUS + ",short"),
                           "SECRET_KEY_PREVIOUS must be at least 32 characters",
                           absent=["short", PREVIOUS])

    def test_metrics_token(self):
        self.assertEqual(load_config(on(METRICS_TOKEN=METRICS)).auth.metrics_token, METRICS)
        self.assertIsNone(load_config(on()).auth.metrics_token)

    def test_short_metrics_token_refused(self):
        self.assertRefused(on(METRICS_TOKEN="m" * 15), "METRICS_TOKEN must be at least 16",
                           absent=["m" * 15])

    def test_metrics_token_one_line(self):
        self.assertRefused(on(METRICS_TOKEN=METRICS + "\r\nx"), "METRICS_TOKEN must be a single line")

    def test_ttls(self):
        auth = load_config(on(JWT_TTL="60", REFRESH_TTL="120", SESSION_TTL="3600")).auth
        self.assertEqual((auth.jwt_ttl, auth.refresh_ttl, auth.session_ttl), (60, 120, 3600))
        self.assertRefused(on(JWT_TTL="10"), "JWT_TTL must be at least 30")
        self.assertRefused(on(SESSION_TTL="x"), "SESSION_TTL must be a number")

    def test_access_setting(self):
        self.assertIs(load_config(on(ACCESS="public")).auth.access, PUBLIC)
        auth = load_config(on(ACCESS="role:team, user:alice")).auth
        self.assertEqual(auth.access, parse_access(["role:team", "user:alice"]))

    def test_access_setting_reaches_the_environment_route(self):
        config = load_config(on(ACCESS="hf_org:acme"))
        self.assertEqual([r.access for r in config.routes], [parse_access(["hf_org:acme"])])

    def test_bad_access_setting(self):
        self.assertRefused(on(ACCESS="everyone"), "ACCESS must be")
        self.assertRefused(on(ACCESS="group:x"), "ACCESS", "'group:x'")


class AdminTests(SynchronousTestCase, ConfigErrorAssertions):
    def test_admin_with_password(self):
        auth = load_config(on(ADMIN_USERNAME=" root ", ADMIN_PASSWORD=PASSWORD)).auth
        self.assertEqual((auth.admin_username, auth.admin_password), ("root", PASSWORD))
        self.assertIsNone(auth.admin_password_hash)

    def test_admin_with_hash(self):
        digest = hash_password(PASSWORD)
        auth = load_config(on(ADMIN_USERNAME="root", ADMIN_PASSWORD_HASH=digest)).auth
        self.assertEqual(auth.admin_password_hash, digest)
        self.assertIsNone(auth.admin_password)

    def test_username_without_password_refused(self):
        self.assertRefused(on(ADMIN_USERNAME="root"),
                           "ADMIN_USERNAME needs ADMIN_PASSWORD or ADMIN_PASSWORD_HASH")

    def test_password_and_hash_refused(self):
        self.assertRefused(on(ADMIN_USERNAME="root", ADMIN_PASSWORD=PASSWORD,
                              ADMIN_PASSWORD_HASH=hash_password(PASSWORD)),
                           "not both", absent=[PASSWORD])

    def test_bad_hash_refused(self):
        for value in ["not-a-hash", PASSWORD, "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
                      "$argon2id$garbage", "$2b$12$abcdefghijklmnopqrstuv"]:
            self.assertRefused(on(ADMIN_USERNAME="root", ADMIN_PASSWORD_HASH=value),
                               "ADMIN_PASSWORD_HASH must be an Argon2id hash", absent=[PASSWORD])

    def test_short_password_refused(self):
        self.assertRefused(on(ADMIN_USERNAME="root", ADMIN_PASSWORD="1234567"),
                           "ADMIN_PASSWORD must be at least 8", absent=["1234567"])

    def test_password_one_line(self):
        self.assertRefused(on(ADMIN_USERNAME="root", ADMIN_PASSWORD=PASSWORD + "\nx"),
                           "ADMIN_PASSWORD must be a single line", absent=[PASSWORD])

    def test_bad_username_refused(self):
        for name in ["bad name", "r\u00f6ot", "a/b", "hf:root", "x" * 65]:
            self.assertRefused(on(ADMIN_USERNAME=name, ADMIN_PASSWORD=PASSWORD), "ADMIN_USERNAME")

    def test_password_without_username_refused(self):
        self.assertRefused(on(ADMIN_PASSWORD=PASSWORD),
                           "ADMIN_PASSWORD is set but ADMIN_USERNAME is not", absent=[PASSWORD])

    def test_hash_without_username_refused(self):
        self.assertRefused(on(ADMIN_PASSWORD_HASH=hash_password(PASSWORD)), "ADMIN_USERNAME")


class HfSignInTests(SynchronousTestCase, ConfigErrorAssertions):
    def test_none_by_default(self):
        self.assertIsNone(load_config(on()).auth.hf)

    def test_ours(self):
        hf = load_config(on(HF_OAUTH_CLIENT_ID="cid", HF_OAUTH_CLIENT_SECRET="csecret")).auth.hf
        self.assertEqual((hf.client_id, hf.client_secret, hf.provider_url, hf.scopes),
                         ("cid", "csecret", "https://huggingface.co", "openid profile"))
        self.assertFalse(hf.admits_anyone)

    def test_client_id_without_secret_refused(self):
        self.assertRefused(on(HF_OAUTH_CLIENT_ID="cid"),
                           "HF_OAUTH_CLIENT_ID is set but HF_OAUTH_CLIENT_SECRET is not")

    def test_space_names_used_when_ours_unset(self):
        hf = load_config(on(OAUTH_CLIENT_ID="space-id", OAUTH_CLIENT_SECRET="space-secret",
                            OPENID_PROVIDER_URL="https://hub.example.org/",
                            OAUTH_SCOPES="openid profile email")).auth.hf
        self.assertEqual((hf.client_id, hf.client_secret, hf.provider_url, hf.scopes),
                         ("space-id", "space-secret", "https://hub.example.org",
                          "openid profile email"))

    def test_space_client_without_secret_refused(self):
        self.assertRefused(on(OAUTH_CLIENT_ID="space-id"), "HF_OAUTH_CLIENT_SECRET")

    def test_ours_win_when_set(self):
        hf = load_config(on(
            HF_OAUTH_CLIENT_ID="cid", HF_OAUTH_CLIENT_SECRET="csecret",
            HF_OAUTH_PROVIDER_URL="https://ours.example.org", HF_OAUTH_SCOPES="openid",
            OAUTH_CLIENT_ID="space-id", OAUTH_CLIENT_SECRET="space-secret",
            OPENID_PROVIDER_URL="https://hub.example.org", OAUTH_SCOPES="openid email",
        )).auth.hf
        self.assertEqual((hf.client_id, hf.client_secret, hf.provider_url, hf.scopes),
                         ("cid", "csecret", "https://ours.example.org", "openid"))

    def test_ours_and_the_space_mixed(self):
        hf = load_config(on(HF_OAUTH_CLIENT_ID="cid", OAUTH_CLIENT_SECRET="space-secret")).auth.hf
        self.assertEqual((hf.client_id, hf.client_secret), ("cid", "space-secret"))

    def test_empty_ours_falls_back_to_the_space(self):
        hf = load_config(on(HF_OAUTH_CLIENT_ID="", OAUTH_CLIENT_ID="space-id",
                            HF_OAUTH_CLIENT_SECRET=" ", OAUTH_CLIENT_SECRET="s")).auth.hf
        self.assertEqual((hf.client_id, hf.client_secret), ("space-id", "s"))

    def test_space_names_without_auth(self):
        # Configured whatever AUTH says (it is only used with AUTH=on).
        hf = load_config(env(OAUTH_CLIENT_ID="space-id", OAUTH_CLIENT_SECRET="s")).auth.hf
        self.assertEqual(hf.client_id, "space-id")

    def hf(self, **settings):
        return load_config(on(HF_OAUTH_CLIENT_ID="cid", HF_OAUTH_CLIENT_SECRET="cs",
                              **settings)).auth.hf

    def test_provider_http_non_loopback_refused(self):
        for url in ["http://huggingface.co", "http://10.0.0.1:8000", "http://localhost.evil.com"]:
            self.assertRefused(on(HF_OAUTH_CLIENT_ID="cid", HF_OAUTH_CLIENT_SECRET="cs",
                                  HF_OAUTH_PROVIDER_URL=url),
                               "HF_OAUTH_PROVIDER_URL must be https://", absent=["cs"])

    def test_space_provider_http_non_loopback_refused(self):
        self.assertRefused(on(OAUTH_CLIENT_ID="cid", OAUTH_CLIENT_SECRET="cs",
                              OPENID_PROVIDER_URL="http://hub.example.org"),
                           "HF_OAUTH_PROVIDER_URL must be https://")

    def test_provider_http_loopback_accepted(self):
        for url, kept in [("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
                          ("http://localhost:1", "http://localhost:1"),
                          ("http://[::1]:8080", "http://[::1]:8080")]:
            self.assertEqual(self.hf(HF_OAUTH_PROVIDER_URL=url).provider_url, kept)

    def test_provider_must_be_an_origin(self):
        for url in ["https://hub.example.org/path", "ftp://hub.example.org", "https://",
                    "https://u:p@hub.example.org"]:
            self.assertRefused(on(HF_OAUTH_CLIENT_ID="cid", HF_OAUTH_CLIENT_SECRET="cs",
                                  HF_OAUTH_PROVIDER_URL=url), "HF_OAUTH_PROVIDER_URL")

    def test_allowed_lists(self):
        hf = self.hf(HF_OAUTH_ALLOWED_USERS=" Alice, BOB ,,carol",
                     HF_OAUTH_ALLOWED_ORGS="Acme,Other-Org",
                     HF_OAUTH_ADMIN_USERS="Root")
        self.assertEqual(hf.allowed_users, ("alice", "bob", "carol"))
        self.assertEqual(hf.allowed_orgs, ("acme", "other-org"))
        self.assertEqual(hf.admin_users, ("root",))
        self.assertTrue(hf.admits_anyone)

    def test_each_list_admits(self):
        self.assertTrue(self.hf(HF_OAUTH_ALLOWED_USERS="a").admits_anyone)
        self.assertTrue(self.hf(HF_OAUTH_ALLOWED_ORGS="a").admits_anyone)
        self.assertTrue(self.hf(HF_OAUTH_ADMIN_USERS="a").admits_anyone)
        self.assertFalse(self.hf(HF_OAUTH_ALLOWED_USERS=" , ").admits_anyone)

    def test_client_secret_not_in_repr(self):
        hf = self.hf()
        self.assertNotIn("cs'", repr(hf))
        self.assertIn("cid", repr(hf))


class PublicUrlTests(SynchronousTestCase, ConfigErrorAssertions):
    def test_unset(self):
        self.assertIsNone(load_config(on()).auth.public_url)

    def test_kept_without_trailing_slash(self):
        self.assertEqual(load_config(on(PUBLIC_URL=" https://gw.example.org/ ")).auth.public_url,
                         "https://gw.example.org")
        self.assertEqual(load_config(on(PUBLIC_URL="http://127.0.0.1:8080")).auth.public_url,
                         "http://127.0.0.1:8080")

    def test_not_an_origin_refused(self):
        for value in ["gw.example.org", "ftp://gw.example.org", "https://", "https:///path",
                      "https://gw.example.org/path", "https://gw.example.org?x=1"]:
            self.assertRefused(on(PUBLIC_URL=value), "PUBLIC_URL must be")

    def test_fragment_refused(self):
        self.assertRefused(on(PUBLIC_URL="https://gw.example.org#x"), "PUBLIC_URL")

    def test_credentials_refused(self):
        self.assertRefused(on(PUBLIC_URL="https://user:pw@gw.example.org"), "PUBLIC_URL")

    def test_bad_port_refused(self):
        for value in ["https://gw.example.org:99999", "https://gw.example.org:0",
                      "https://gw.example.org:x"]:
            self.assertRefused(on(PUBLIC_URL=value), "PUBLIC_URL")

    def test_bad_hostname_refused(self):
        self.assertRefused(on(PUBLIC_URL="https://gw example.org"), "PUBLIC_URL")

    def test_non_ascii_host_refused_or_made_ascii(self):
        # The value is compared as ASCII bytes with Origin headers (auth_pages
        # encodes it with "ascii"), so it must come out ASCII or not at all.
        try:
            value = load_config(on(PUBLIC_URL="https://g\u00e4tway.example")).auth.public_url
        except ConfigError:
            value = None
        self.assertTrue(value is None or value.isascii(), repr(value))

    def test_space_host_default(self):
        self.assertEqual(load_config(on(SPACE_HOST="user-gw.hf.space")).auth.public_url,
                         "https://user-gw.hf.space")

    def test_public_url_wins_over_space_host(self):
        self.assertEqual(load_config(on(SPACE_HOST="user-gw.hf.space",
                                        PUBLIC_URL="https://gw.example.org")).auth.public_url,
                         "https://gw.example.org")

    def test_empty_space_host_ignored(self):
        self.assertIsNone(load_config(on(SPACE_HOST=" ")).auth.public_url)


class ReprTests(SynchronousTestCase):
    def test_no_secret_in_repr(self):
        secrets = {
            "SECRET_KEY": "secret-key-" + "1" * 30,
            "SECRET_KEY_PREVIOUS": "previous-key-" + "2" * 30,
            "METRICS_TOKEN": "metrics-token-" + "3" * 10,
            "ADMIN_PASSWORD": "admin-password-4444",
            "HF_OAUTH_CLIENT_SECRET": "client-secret-5555",
        }
        config = load_config(env(AUTH="on", ADMIN_USERNAME="root", HF_OAUTH_CLIENT_ID="cid",
                                 **secrets))
        for text in (repr(config), repr(config.auth), str(config.auth), repr(config.auth.hf)):
            for name, value in secrets.items():
                self.assertNotIn(value, text, name)
        self.assertIn("root", repr(config.auth))

    def test_no_hash_in_repr(self):
        digest = hash_password(PASSWORD)
        config = load_config(on(ADMIN_USERNAME="root", ADMIN_PASSWORD_HASH=digest))
        self.assertNotIn(digest, repr(config))
        self.assertNotIn(digest.split("$")[-1], repr(config))


class RouteAccessTests(SynchronousTestCase, ConfigErrorAssertions):
    ROUTE = '''
[[routes]]
name = "x"
path = "/x"
%s

[[routes.upstreams]]
url = "https://user-x.hf.space"
'''

    def write(self, access_line):
        fd, path = tempfile.mkstemp(suffix=".toml")
        self.addCleanup(os.remove, path)
        with os.fdopen(fd, "w") as f:
            f.write(self.ROUTE % access_line)
        return path

    def routes(self, access_line, **settings):
        config = load_config(on(WIGHAVEN_CONFIG=self.write(access_line), **settings))
        return {route.name: route for route in config.routes}

    def test_default_is_signed_in(self):
        self.assertIs(self.routes("")["x"].access, SIGNED_IN)

    def test_access_accepted(self):
        self.assertIs(self.routes('access = "public"')["x"].access, PUBLIC)
        self.assertIs(self.routes('access = "signed_in"')["x"].access, SIGNED_IN)
        self.assertEqual(self.routes('access = ["role:team", "hf_org:acme"]')["x"].access,
                         parse_access(["role:team", "hf_org:acme"]))

    def test_file_access_independent_of_access_setting(self):
        routes = self.routes('access = "public"', ACCESS="role:team")
        self.assertIs(routes["x"].access, PUBLIC)
        self.assertEqual(routes["default"].access, parse_access(["role:team"]))

    def test_bad_access_refused(self):
        for line in ['access = "everyone"', 'access = []', 'access = ["group:x"]',
                     'access = [1]', 'access = 3', 'access = ["role:a b"]']:
            message = self.assertRefused(on(WIGHAVEN_CONFIG=self.write(line)),
                                         "route 'x': access: ")
            self.assertTrue(message.startswith("route 'x': access: "), message)
