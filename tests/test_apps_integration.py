"""Real Spaces through the gateway: a Gradio app and a Streamlit app behind a
token-checking TLS front, used with gradio_client and with headless
Chromium (Debian's chromium, driven by Playwright; no browser download).

Each app, its front and its gateway are separate processes on 127.0.0.1.
"""

import atexit
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request

from twisted.trial.unittest import SynchronousTestCase

from tests.support.apps import PrivateSpace
from tests.support.gateway import TOKEN, GatewayProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


_running = {}


def space_behind_gateway(kind):
    """
    The app C{kind} behind its front and a gateway, started on first use and
    shared by the tests of this module (an app takes seconds to start);
    stopped when the test run ends.
    """
    if kind not in _running:
        space = PrivateSpace(kind, TOKEN)
        gateway = GatewayProcess(
            space.origin, os.path.join(space.dir, "gateway.log"), DASHBOARD_PATH="/_gateway/"
        )
        try:
            gateway.wait_ready()
        except Exception:
            gateway.stop()
            space.stop()
            raise
        _running[kind] = (space, gateway)
        atexit.register(lambda: (gateway.stop(), space.stop()))
    return _running[kind]


class _SpaceBehindGateway:
    """Tests shared by every app (class attribute C{kind})."""

    kind = None

    def setUp(self):
        self.space, self.gateway = space_behind_gateway(self.kind)
        self.url = self.gateway.url

    def test_space_is_private_without_the_gateway(self):
        import ssl

        from tests.support.certs import pki

        context = ssl.create_default_context(cafile=pki().ca_pem)
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(self.space.origin + "/", context=context, timeout=10)
        self.assertEqual(caught.exception.code, 404)

    def browse(self, path, actions, screenshot):
        """Open C{path} through the gateway in headless Chromium and run C{actions(page)}."""
        from playwright.sync_api import sync_playwright

        os.makedirs(ARTIFACTS, exist_ok=True)
        profile = tempfile.mkdtemp(prefix="wighaven-chromium-")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                page.goto(self.url + path, wait_until="domcontentloaded", timeout=60000)
                result = actions(page)
                page.screenshot(path=os.path.join(ARTIFACTS, screenshot))
                return result
            finally:
                browser.close()
                shutil.rmtree(profile, ignore_errors=True)


class GradioTests(_SpaceBehindGateway, SynchronousTestCase):
    kind = "gradio"

    def client(self):
        from gradio_client import Client

        return Client(self.url + "/", verbose=False, download_files=tempfile.mkdtemp())

    def test_prediction(self):
        self.assertEqual(self.client().predict("WigHaven", api_name="/greet"), "Hello, WigHaven!")

    def test_streaming_generator_arrives_piece_by_piece(self):
        job = self.client().submit(4, api_name="/count")
        arrivals = []
        started = time.monotonic()
        for output in job:
            arrivals.append((time.monotonic() - started, output))
        self.assertEqual([o for _, o in arrivals], ["0", "0 1", "0 1 2", "0 1 2 3"])
        # Partial results come about 0.4 s apart, not all at the end.
        gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:])]
        self.assertTrue(all(gap > 0.2 for gap in gaps), gaps)

    def test_file_upload_and_download(self):
        from gradio_client import handle_file

        payload = os.urandom(3 * 1024 * 1024)
        source = os.path.join(tempfile.mkdtemp(), "payload.bin")
        with open(source, "wb") as f:
            f.write(payload)
        downloaded = self.client().predict(handle_file(source), api_name="/echo_file")
        with open(downloaded, "rb") as f:
            self.assertEqual(f.read(), payload)

    def test_ui_in_chromium(self):
        def use(page):
            page.locator("#name textarea").fill("Chromium")
            page.locator("#greet").click()
            greeting = page.locator("#greeting textarea")
            for _ in range(100):
                if greeting.input_value() == "Hello, Chromium!":
                    return greeting.input_value()
                time.sleep(0.1)
            return greeting.input_value()

        self.assertEqual(self.browse("/", use, "gradio-through-gateway.png"), "Hello, Chromium!")


class StreamlitTests(_SpaceBehindGateway, SynchronousTestCase):
    kind = "streamlit"

    def test_ui_in_chromium_over_websocket(self):
        def use(page):
            field = page.get_by_label("Your name")
            field.wait_for(timeout=60000)
            field.fill("Chromium")
            field.press("Enter")
            page.get_by_role("button", name="Say hello").click()
            message = page.get_by_text("Hello from Streamlit, Chromium!")
            message.wait_for(timeout=30000)
            return message.inner_text()

        self.assertEqual(
            self.browse("/", use, "streamlit-through-gateway.png"), "Hello from Streamlit, Chromium!"
        )
        log = self.gateway.output()
        self.assertIn("GET /_stcore/stream 101", log)
