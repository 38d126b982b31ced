"""The config file's routes with real Spaces: two Gradio replicas behind one
route (Gradio affinity, round robin), Gradio under a path prefix, and
Streamlit under a path prefix, used with gradio_client and with headless
Chromium (Debian's chromium, driven by Playwright).

    client -> gateway (twistd, WIGHAVEN_CONFIG) -> nginx front (https, the
    upstream's own token) -> app (http)

Each app behind its own front demanding its own token, like a private Space
on Hugging Face. Every process runs on 127.0.0.1; the apps (seconds to start)
and each test class's gateway are started on first use, shared by the tests
of this module and stopped when the test run ends.
"""

import atexit
import base64
import collections
import concurrent.futures
import http.client
import json
import os
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
import uuid

from twisted.trial.unittest import SynchronousTestCase

from tests.support.apps import PrivateGradioReplica, PrivateSpace
from tests.support.certs import pki
from tests.support.gateway import GatewayProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT = 60  # seconds any one call or page load may take
ANSWER_TIMEOUT = 30  # seconds a page may take to show an answer

# Each front's token, and the environment variable the config file names it by.
TOKENS = {
    "TOKEN_REPLICA_A": "hf_replicaA_Zq81xLw0pR4c7VbN2mKd",
    "TOKEN_REPLICA_B": "hf_replicaB_Yt55aHs3nE9u1JfQ6oPx",
    "TOKEN_CHAT": "hf_chat_Wr27bGk8sD0v4LyT3iMe",
    "TOKEN_DASH": "hf_dash_Vp63cFj9qA1x5KzR8uNw",
}

# The apps: (how to start it, the token variable of its front).
_APPS = {
    "replica-a": (lambda: PrivateGradioReplica(TOKENS["TOKEN_REPLICA_A"], env={
        "REPLICA_NAME": "replica-a", "FRONT_TOKEN": TOKENS["TOKEN_REPLICA_A"]}),
        "TOKEN_REPLICA_A"),
    "replica-b": (lambda: PrivateGradioReplica(TOKENS["TOKEN_REPLICA_B"], env={
        "REPLICA_NAME": "replica-b", "FRONT_TOKEN": TOKENS["TOKEN_REPLICA_B"]}),
        "TOKEN_REPLICA_B"),
    # The same app, told the prefix it is served under (what a Space's variables would say).
    "rooted": (lambda: PrivateGradioReplica(TOKENS["TOKEN_CHAT"], env={
        "REPLICA_NAME": "rooted", "FRONT_TOKEN": TOKENS["TOKEN_CHAT"],
        "GRADIO_ROOT_PATH": "/chat"}),
        "TOKEN_CHAT"),
    "dash": (lambda: PrivateSpace("streamlit", TOKENS["TOKEN_DASH"]), "TOKEN_DASH"),
}

_running = {}  # app name -> its PrivateSpace
_gateways = {}  # gateway name -> GatewayProcess


_logs = []  # the folder keeping the logs: under the trial's temporary directory


def _log_dir(name):
    """A folder for C{name}'s logs, kept after the run (under _trial_temp)."""
    if not _logs:
        _logs.append(os.path.abspath("routes-apps-logs"))
    folder = os.path.join(_logs[0], name)
    os.makedirs(folder, exist_ok=True)
    return folder


def _stop_everything():
    for gateway in _gateways.values():
        gateway.stop()
    for name, space in _running.items():
        space.stop()
        for log in os.listdir(space.dir):
            if log.endswith(".log"):
                shutil.copy(os.path.join(space.dir, log), _log_dir(name))
        shutil.rmtree(space.dir, ignore_errors=True)


atexit.register(_stop_everything)


def apps(*names):
    """The apps C{names}, the ones not yet running started side by side."""
    missing = [name for name in names if name not in _running]
    if missing:
        with concurrent.futures.ThreadPoolExecutor(len(missing)) as pool:
            futures = {name: pool.submit(_APPS[name][0]) for name in missing}
        errors = []
        for name, future in futures.items():
            try:
                _running[name] = future.result()
            except Exception as e:
                errors.append("%s: %s" % (name, e))
        if errors:
            raise RuntimeError("apps did not start:\n" + "\n".join(errors))
    return [_running[name] for name in names]


def route(name, path, upstreams, **keys):
    """A [[routes]] table of TOML for the app names C{upstreams}."""
    lines = ["[[routes]]", "name = %s" % json.dumps(name), "path = %s" % json.dumps(path)]
    lines += ["%s = %s" % (key, json.dumps(value)) for key, value in keys.items()]
    for app in upstreams:
        lines += ["", "[[routes.upstreams]]",
                  "url = %s" % json.dumps(_running[app].origin),
                  "token = %s" % json.dumps("env:" + _APPS[app][1])]
    return "\n".join(lines) + "\n\n"


def gateway(name, routes):
    """
    A real `twistd wighaven` whose routes all come from a config file
    (no PRIVATE_BACKEND_URL, no HF_TOKEN): each token is an "env:NAME"
    reference to the gateway's environment. C{routes}: () -> the file's TOML,
    made once the apps run.
    """
    if name not in _gateways:
        folder = _log_dir("gateway-" + name)
        config = os.path.join(folder, "routes.toml")
        with open(config, "w") as f:
            f.write(routes())
        process = GatewayProcess(
            None, os.path.join(folder, "gateway.log"), WIGHAVEN_CONFIG=config,
            PRIVATE_BACKEND_URL=None, HF_TOKEN=None, DASHBOARD_PATH="/_gateway/",
            BACKEND_CA_BUNDLE=pki().ca_pem, **TOKENS,
        )
        try:
            process.wait_ready()
        except Exception:
            process.stop()
            raise
        _gateways[name] = process
    return _gateways[name]


def gradio_client(url):
    """A fresh gradio_client session (no cookie, a new session_hash) to C{url}."""
    from gradio_client import Client

    return Client(url, verbose=False, download_files=tempfile.mkdtemp(), analytics_enabled=False,
                  httpx_kwargs={"timeout": TIMEOUT})


def call(client, api_name, *args):
    """The result of one call, waited for at most TIMEOUT seconds."""
    return client.submit(*args, api_name=api_name).result(timeout=TIMEOUT)


def streamed(client, n):
    """The pieces of C{/stream} as they arrived: (seconds since the call, piece)."""
    job = client.submit(n, api_name="/stream")
    started = time.monotonic()
    pieces = []
    for piece in job:  # each read is bounded by the client's httpx timeout
        pieces.append((time.monotonic() - started, piece))
        if time.monotonic() - started > TIMEOUT:
            raise AssertionError("the stream is still running after %ds" % TIMEOUT)
    return pieces


def text_file(content):
    path = os.path.join(tempfile.mkdtemp(), "upload.txt")
    with open(path, "w") as f:
        f.write(content)
    return path


def browse(testcase, actions, screenshot, args=()):
    """
    In a fresh headless Chromium, run C{actions(page)} (which opens a page), then
    screenshot the page into the test's temporary directory.
    @return: (what C{actions} returned, the screenshot's path).
    """
    from playwright.sync_api import sync_playwright

    folder = testcase.mktemp()
    os.makedirs(folder)
    shot = os.path.join(folder, screenshot)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS + list(args), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.set_default_timeout(TIMEOUT * 1000)
            result = actions(page)
            page.screenshot(path=shot, full_page=True)
            return result, shot
        finally:
            browser.close()


def wait_for_value(locator, done, timeout=ANSWER_TIMEOUT):
    """Poll a field until C{done(value)}; every distinct value seen, in order."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        value = locator.input_value()
        if not seen or seen[-1] != value:
            seen.append(value)
        if done(value) or time.monotonic() > deadline:
            return seen
        time.sleep(0.03)


def use_gradio_page(page, words, upload, pieces=6):
    """
    Use the replica app's page: C{whoami} once per word, C{stream}, then
    upload the file C{upload} and read it back. @return: the fields' final
    values ({"said": [...], "pieces": [every value seen], "content": ...}).
    """
    page.locator("#text textarea").wait_for()
    said = []
    for word in words:
        page.locator("#text textarea").fill(word)
        page.locator("#whoami").click()
        said.append(wait_for_value(
            page.locator("#said textarea"), lambda v, w=word: v.endswith(" says " + w))[-1])
    page.locator("#n input").fill(str(pieces))
    page.locator("#stream").click()
    seen = wait_for_value(
        page.locator("#pieces textarea"), lambda v: v.endswith("piece %d" % (pieces - 1)))
    page.locator("#upload input[type=file]").set_input_files(upload)
    page.locator("#upload").get_by_text(os.path.basename(upload)).first.wait_for()
    page.locator("#read").click()
    content = wait_for_value(page.locator("#content textarea"), lambda v: " read: " in v)[-1]
    return {"said": said, "pieces": seen, "content": content}


def status_of(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


_fn_index = {}  # (base URL, api_name) -> fn_index


def queue_call(base, api_name, data, session=None):
    """
    One call by Gradio's queue protocol, with plain httpx and no cookies:
    C{queue/join} (the session_hash in its JSON body), then the
    C{queue/data?session_hash=} event stream. @return: its process_completed message.
    """
    import httpx

    if (base, api_name) not in _fn_index:  # asked once: the calls' requests are joins and streams
        config = httpx.get(base + "/config", timeout=TIMEOUT).json()
        _fn_index[base, api_name] = next(
            d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    fn_index = _fn_index[base, api_name]
    session = session or uuid.uuid4().hex
    joined = httpx.post(base + "/gradio_api/queue/join", timeout=TIMEOUT, json={
        "data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
        "trigger_id": None})
    if joined.status_code != 200:
        raise AssertionError("join: %d %s" % (joined.status_code, joined.text))
    with httpx.stream("GET", base + "/gradio_api/queue/data", timeout=TIMEOUT,
                      params={"session_hash": session}) as events:
        if events.status_code != 200:
            raise AssertionError("queue/data: %d %s" % (events.status_code, events.read()))
        for line in events.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("no process_completed from " + base)


class GradioReplicasTests(SynchronousTestCase):
    """
    Two replicas of one Gradio app, each with its own uploads folder and its
    own token, behind one route with Gradio affinity, balanced round robin.
    Routes /only-a and /only-b reach one replica each, for the controls.
    """

    def setUp(self):
        self.a, self.b = apps("replica-a", "replica-b")
        self.gateway = gateway("replicas", lambda: (
            route("replicas", "/", ["replica-a", "replica-b"], affinity="gradio",
                  balance="round_robin")
            + route("only-a", "/only-a", ["replica-a"])
            + route("only-b", "/only-b", ["replica-b"])))
        self.url = self.gateway.url

    def test_each_front_demands_its_own_token(self):
        """The fronts refuse each other's token (so serving proves each got its own)."""
        context = ssl.create_default_context(cafile=pki().ca_pem)
        for space, own, other in [(self.a, "TOKEN_REPLICA_A", "TOKEN_REPLICA_B"),
                                  (self.b, "TOKEN_REPLICA_B", "TOKEN_REPLICA_A")]:
            for token, expected in [(TOKENS[other], 404), (TOKENS[own], 200)]:
                request = urllib.request.Request(
                    space.origin + "/config", headers={"Authorization": "Bearer " + token})
                try:
                    with urllib.request.urlopen(request, context=context, timeout=10) as r:
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                self.assertEqual(status, expected, (space.origin, token))

    def test_an_upload_is_known_only_to_its_replica(self):
        """
        The control: a file uploaded to replica-a is refused by replica-b, so
        an upload and the call using it must reach the same replica.
        """
        import httpx

        answer = httpx.post(self.url + "/only-a/gradio_api/upload",
                            files={"files": ("x.txt", b"kept by replica-a")}, timeout=TIMEOUT)
        self.assertEqual(answer.status_code, 200, answer.text)
        uploaded = [{"path": answer.json()[0], "meta": {"_type": "gradio.FileData"}}]
        on_a = queue_call(self.url + "/only-a", "read_file", uploaded)
        self.assertTrue(on_a["success"], on_a)
        self.assertEqual(on_a["output"]["data"][0], "replica-a read: kept by replica-a")
        on_b = queue_call(self.url + "/only-b", "read_file", uploaded)
        self.assertFalse(on_b["success"], on_b)

    def test_cookieless_api_calls_follow_their_session_hash(self):
        """
        An API client that keeps no cookie: each call's event stream
        (queue/data?session_hash=) reaches the replica its join (the
        session_hash in the body) went to; the joins are spread.
        """
        served = collections.Counter()
        for i in range(10):
            done = queue_call(self.url, "whoami", ["call %d" % i])
            self.assertTrue(done["success"], done)
            said = done["output"]["data"][0]
            replica = said.split(" says ", 1)[0]
            self.assertEqual(said, "%s says call %d" % (replica, i))
            served[replica] += 1
        self.assertEqual(set(served), {"replica-a", "replica-b"}, served)

    def test_cookieless_upload_then_call_reach_the_files_replica(self):
        """
        An API client that keeps no cookie uploads (the upload carries no
        session: it is balanced on its own), then joins naming the file: the
        join goes to the replica the file is on, 10 times over both replicas.
        """
        import httpx

        served = collections.Counter()
        for i in range(10):
            content = "cookie-less %d" % i
            answer = httpx.post(self.url + "/gradio_api/upload",
                                files={"files": ("x%d.txt" % i, content.encode())},
                                timeout=TIMEOUT)
            self.assertEqual(answer.status_code, 200, answer.text)
            uploaded = [{"path": answer.json()[0], "meta": {"_type": "gradio.FileData"}}]
            done = queue_call(self.url, "read_file", uploaded)
            self.assertTrue(done["success"], done)
            said = done["output"]["data"][0]
            replica = said.split(" read: ", 1)[0]
            self.assertEqual(said, "%s read: %s" % (replica, content))
            served[replica] += 1
        self.assertEqual(set(served), {"replica-a", "replica-b"}, served)

    def test_gradio_client_sessions_stay_on_one_replica(self):
        """
        20 fresh gradio_client sessions through the gateway: each one's calls
        (a prediction, a stream, an upload and the call using it, the answer
        file's download) all reach one replica; the sessions use both.
        """
        from gradio_client import handle_file

        served = collections.Counter()
        order = []
        for i in range(20):
            content = "session %d says hi" % i
            client = gradio_client(self.url + "/")
            try:
                said = call(client, "/whoami", "hello %d" % i)
                replica = said.split(" says ", 1)[0]
                self.assertIn(replica, ("replica-a", "replica-b"), said)
                self.assertEqual(said, "%s says hello %d" % (replica, i))
                pieces = [piece for _, piece in streamed(client, 4)]
                self.assertEqual(pieces, ["%s piece %d" % (replica, k) for k in range(4)],
                                 "session %d" % i)
                text, answer = call(client, "/read_file", handle_file(text_file(content)))
                self.assertEqual(text, "%s read: %s" % (replica, content), "session %d" % i)
                with open(answer) as f:  # downloaded from the same replica
                    self.assertEqual(f.read(), "%s read: %s" % (replica, content))
                self.assertIn("wh_aff_replicas", client.cookies)
            finally:
                client.close()
            served[replica] += 1
            order.append(replica)
        self.assertEqual(set(served), {"replica-a", "replica-b"}, order)
        # Round robin over each session's first (cookie-less) request.
        self.assertGreaterEqual(min(served.values()), 8, order)

    def test_browser_session_stays_on_one_replica(self):
        """Chromium on the UI: every interaction answered by the replica its cookie names."""
        upload = text_file("from Chromium")

        def use(page):
            page.goto(self.url + "/", wait_until="domcontentloaded")
            values = use_gradio_page(page, ["one", "two", "three"], upload)
            values["cookies"] = [c["name"] for c in page.context.cookies()]
            return values

        values, shot = browse(self, use, "gradio-replicas.png")
        replica = values["said"][0].split(" says ", 1)[0]
        self.assertIn(replica, ("replica-a", "replica-b"), values)
        self.assertEqual(values["said"], ["%s says %s" % (replica, w) for w in ("one", "two", "three")])
        self.assertEqual(values["pieces"][-1], "%s piece 5" % replica, values)
        self.assertEqual(values["content"], "%s read: from Chromium" % replica)
        self.assertIn("wh_aff_replicas", values["cookies"])
        self.assertGreater(os.path.getsize(shot), 0)


class GradioPrefixTests(SynchronousTestCase):
    """
    Gradio under path prefixes of one gateway with no route at /: /chat to
    an app told its prefix (GRADIO_ROOT_PATH=/chat), /plain to one that is
    not. A request leaking out of its prefix would get 404 no_route.
    """

    def setUp(self):
        apps("rooted", "replica-a")
        self.gateway = gateway("prefixes", lambda: (
            route("chat", "/chat", ["rooted"], strip_path=True)
            + route("plain", "/plain", ["replica-a"], strip_path=True)))
        self.url = self.gateway.url

    def test_nothing_outside_the_prefixes(self):
        status, body = status_of(self.url + "/gradio_api/info")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"], "no_route")

    def test_prefix_without_slash_is_redirected(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.gateway.port, timeout=10)
        try:
            connection.request("GET", "/chat")
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        self.assertEqual(response.status, 308)
        self.assertIn(response.getheader("Location"), ("/chat/", self.url + "/chat/"))

    def test_ui_in_chromium_under_prefix(self):
        """
        Chromium at /chat (no slash): redirected to /chat/, the UI loads,
        answers, streams piece by piece and takes an upload, with every
        request of the page under /chat/.
        """
        upload = text_file("under a prefix")
        requests = []

        def use(page):
            page.on("request", lambda r: requests.append(r.url))
            page.goto(self.url + "/chat", wait_until="domcontentloaded")
            values = use_gradio_page(page, ["prefixed"], upload)
            values["url"] = page.url
            return values

        values, shot = browse(self, use, "gradio-under-prefix.png")
        self.assertEqual(values["url"], self.url + "/chat/")
        self.assertEqual(values["said"], ["rooted says prefixed"])
        self.assertEqual(values["pieces"][-1], "rooted piece 5")
        # Partial results were shown as they came, not only the last one.
        self.assertGreaterEqual(
            len([v for v in values["pieces"] if v.startswith("rooted piece")]), 3, values)
        self.assertEqual(values["content"], "rooted read: under a prefix")
        outside = [u for u in requests
                   if not (u == self.url + "/chat" or u.startswith(self.url + "/chat/"))]
        self.assertEqual(outside, [])
        self.assertGreater(os.path.getsize(shot), 0)

    def _client_under_prefix(self, prefix, replica):
        from gradio_client import handle_file

        client = gradio_client(self.url + prefix + "/")
        try:
            self.assertEqual(call(client, "/whoami", "hi"), "%s says hi" % replica)
            self.assertEqual([p for _, p in streamed(client, 3)],
                             ["%s piece %d" % (replica, k) for k in range(3)])
            text, answer = call(client, "/read_file", handle_file(text_file("via " + prefix)))
            self.assertEqual(text, "%s read: via %s" % (replica, prefix))
            with open(answer) as f:
                self.assertEqual(f.read(), "%s read: via %s" % (replica, prefix))
        finally:
            client.close()

    def test_gradio_client_under_prefix(self):
        self._client_under_prefix("/chat", "rooted")

    def test_gradio_client_under_prefix_without_root_path(self):
        """gradio_client needs no GRADIO_ROOT_PATH: its URLs come from the address it is given."""
        self._client_under_prefix("/plain", "replica-a")


class StreamlitPrefixTests(SynchronousTestCase):
    """
    Streamlit under /dash with nothing set in the app, reached by a host
    name that is neither 127.0.0.1 nor localhost (gw.test, mapped by
    Chromium's resolver), so its WebSocket Origin check passes only
    because the gateway gives the handshake the upstream's own Origin.
    """

    def setUp(self):
        (self.space,) = apps("dash")
        self.gateway = gateway("dash", lambda: route("dash", "/dash", ["dash"]))
        self.port = self.gateway.port
        self.origin = "http://gw.test:%d" % self.port

    def _handshake(self, connection, path, origin, host=None, token=None):
        """The status of a WebSocket handshake to C{path} with C{origin}."""
        headers = {
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Origin": origin,
        }
        if host:
            headers["Host"] = host
        if token:
            headers["Authorization"] = "Bearer " + token
        try:
            connection.request("GET", path, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()

    def test_streamlit_refuses_the_gateway_origin_on_its_own(self):
        """The control: straight to the front, the browser's Origin gets 403."""
        context = ssl.create_default_context(cafile=pki().ca_pem)

        def front():
            return http.client.HTTPSConnection(
                "localhost", self.space.port, context=context, timeout=10)

        token = TOKENS["TOKEN_DASH"]
        self.assertEqual(
            self._handshake(front(), "/_stcore/stream", self.origin, "gw.test:%d" % self.port,
                            token), 403)
        self.assertEqual(self._handshake(front(), "/_stcore/stream", self.space.origin,
                                         token=token), 101)

    def test_foreign_origin_still_refused(self):
        """Another site's page keeps its Origin through the gateway: Streamlit refuses it."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.assertEqual(self._handshake(connection, "/dash/_stcore/stream",
                                         "http://evil.example", "gw.test:%d" % self.port), 403)

    def test_ui_in_chromium_by_host_name(self):
        sockets = []

        def use(page):
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(self.origin + "/dash/", wait_until="domcontentloaded")
            field = page.get_by_label("Your name")
            field.wait_for()
            field.fill("Chromium")
            field.press("Enter")
            page.get_by_role("button", name="Say hello").click()
            message = page.get_by_text("Hello from Streamlit, Chromium!")
            message.wait_for()
            return message.inner_text()

        text, shot = browse(self, use, "streamlit-under-prefix.png",
                            args=["--host-resolver-rules=MAP gw.test 127.0.0.1"])
        self.assertEqual(text, "Hello from Streamlit, Chromium!")
        self.assertEqual(sockets, ["ws://gw.test:%d/dash/_stcore/stream" % self.port])
        self.assertIn("GET /dash/_stcore/stream 101", self.gateway.output())
        self.assertGreater(os.path.getsize(shot), 0)
