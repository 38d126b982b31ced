"""A real WebSocket backend for tests: the `websockets` library's server over
TLS (test CA) on 127.0.0.1, in a thread with its own asyncio loop.

Like a private Space, it refuses a handshake without the token (404). It
echoes every message back, answers a plain GET with a normal 426 response,
and remembers the handshake headers it saw.
"""

import asyncio
import http
import ssl
import threading

from websockets.asyncio.server import serve
from websockets.datastructures import Headers

from .certs import pki


class WebSocketBackend:
    def __init__(self, token):
        self.token = token
        self.handshakes = []  # request headers of each accepted or refused handshake
        self.open = 0  # WebSocket connections open on the server side now
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("websocket backend did not start")

    @property
    def origin(self):
        return "https://localhost:%d" % self.port

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._loop.run_forever()

    async def _start(self):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki().good)
        self._server = await serve(
            self._echo, "127.0.0.1", 0, ssl=context, process_request=self._check,
            select_subprotocol=self._subprotocol, max_size=None, compression=None,
            ping_interval=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()

    @staticmethod
    def _subprotocol(connection, offered):
        """The server's preferred subprotocol among those offered, or none."""
        for preferred in ("chat.v2", "chat.v1"):
            if preferred in offered:
                return preferred
        return None

    def _check(self, connection, request):
        self.handshakes.append(list(request.headers.raw_items()))
        if request.headers.get("Authorization") != "Bearer " + self.token:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "no such space\n")
        if request.path.startswith("/plain"):
            response = connection.respond(http.HTTPStatus.UPGRADE_REQUIRED, "plain answer\n")
            response.headers = Headers([("Content-Type", "text/plain"),
                                        ("Content-Length", "13"), ("X-Plain", "yes")])
            return response
        return None

    async def _echo(self, websocket):
        self.open += 1
        try:
            cookie = websocket.request.headers.get("Cookie")
            if websocket.request.path == "/hello":
                await websocket.send("hello %s" % cookie)
            async for message in websocket:
                await websocket.send(message)
        finally:
            self.open -= 1

    def stop(self):
        async def close():
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
