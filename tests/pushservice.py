"""A local push service for the tests: a real HTTP server on loopback that plays a Web Push
service (it decrypts what it receives with the subscription's private key, as a browser
would) and the FCM HTTP v1 API with its OAuth2 token endpoint (it checks the JWT's signature
and the bearer token). The test makes the browser's side of each subscription.

    service = await PushService.start(self)
    browser = service.subscription()          # endpoint + keys, as PushSubscription.toJSON()
    push = await service.received(browser)    # the decrypted payload (a dict) of its next push
    service.answer(browser, 410)              # or "hang": never answer
    fcm = service.fcm_credentials(path)       # a service-account file pointing here
"""

import base64
import itertools
import json
import os
from typing import Any
from urllib.parse import parse_qs

import http_ece
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

WAIT = 5.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Browser:
    """The browser's side of one Web Push subscription: its key pair and auth secret."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def json(self) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint,
                "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)}}


class Inbox:
    """What arrived at one endpoint, and the answer it gives."""

    def __init__(self) -> None:
        self.arrived: list[dict[str, Any]] = []  # {"headers", "payload"}
        self.waiting: list[defer.Deferred[dict[str, Any]]] = []
        self.answer: int | str = 201
        self.hanging: list[Any] = []
        self.taken = 0  # pushes handed to the test by `received`

    def add(self, item: dict[str, Any]) -> None:
        self.arrived.append(item)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(item)


class Endpoint(Resource):
    isLeaf = True

    def __init__(self, service: "PushService") -> None:
        super().__init__()
        self.service = service

    def render_POST(self, request: Any) -> Any:
        path = request.path.decode()
        if path == "/token":
            return self.service.token(request)
        if path.startswith("/v1/projects/"):
            return self.service.fcm(request)
        return self.service.webpush(path, request)


class PushService:
    """The HTTP server and what it received, per endpoint path."""

    def __init__(self) -> None:
        self.inboxes: dict[str, Inbox] = {}
        self.browsers: dict[str, Browser] = {}
        self.port = 0
        self._ids = itertools.count(1)
        self.fcm_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.channels: list[Any] = []  # server connections, closed at the end

    @classmethod
    async def start(cls, case: TestCase) -> "PushService":
        service = cls()
        site = Site(Endpoint(service))
        build = site.buildProtocol

        def tracked(address: Any) -> Any:
            channel = build(address)
            service.channels.append(channel)
            return channel
        site.buildProtocol = tracked  # type: ignore[method-assign]
        listener = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        service.port = listener.getHost().port
        case.addCleanup(service.stop, listener)
        return service

    async def stop(self, listener: Any) -> None:
        await listener.stopListening()
        for wrapper in self.channels:
            channel = wrapper._channel  # the HTTPChannel inside Site's protocol wrapper
            channel.setTimeout(None)
            if channel.transport is not None and channel.transport.connected:
                channel.transport.abortConnection()
        await deferLater(reactor, 0, lambda: None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def subscription(self) -> Browser:
        path = f"/wp/{next(self._ids)}"
        browser = Browser(self.url + path)
        self.browsers[path] = browser
        self.inboxes[path] = Inbox()
        return browser

    def inbox(self, endpoint: str) -> Inbox:
        path = endpoint.removeprefix(self.url)
        return self.inboxes.setdefault(path, Inbox())

    def answer(self, browser: Browser, code: int | str) -> None:
        self.inbox(browser.endpoint).answer = code

    def arrived(self, endpoint: str) -> list[dict[str, Any]]:
        return [item["payload"] for item in self.inbox(endpoint).arrived]

    async def received(self, endpoint: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next push to `endpoint` not yet taken; fails after `timeout`."""
        inbox = self.inbox(endpoint)
        taken = inbox.taken
        if len(inbox.arrived) > taken:
            inbox.taken += 1
            return inbox.arrived[taken]["payload"]
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        inbox.waiting.append(d)
        d.addTimeout(timeout, reactor)
        try:
            item = await d
        except defer.TimeoutError:
            raise AssertionError(f"no push at {endpoint} within {timeout}s") from None
        inbox.taken += 1
        return item["payload"]

    def webpush(self, path: str, request: Any) -> Any:
        browser = self.browsers.get(path)
        if browser is None:
            request.setResponseCode(404)
            return b""
        inbox = self.inboxes[path]
        headers = {k.decode().lower(): v[0].decode()
                   for k, v in request.requestHeaders.getAllRawHeaders()}
        plain = http_ece.decrypt(request.content.read(), private_key=browser.key,
                                 auth_secret=browser.auth, version="aes128gcm")
        if inbox.answer == "hang":
            inbox.hanging.append(request)
            return NOT_DONE_YET
        if inbox.answer in (201, 200):
            inbox.add({"headers": headers, "payload": json.loads(plain)})
        request.setResponseCode(int(inbox.answer))
        return b""

    def fcm_credentials(self, path: str, project: str = "chatd-test") -> str:
        """Write a service-account file whose token_uri is this service; returns `path`."""
        pem = self.fcm_key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode()
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"type": "service_account", "project_id": project,
                       "private_key": pem, "client_email": "chatd@test.invalid",
                       "token_uri": f"{self.url}/token"}, f)
        return path

    def token(self, request: Any) -> bytes:
        """The OAuth2 token endpoint: a JWT bearer grant signed with the account's key."""
        form = parse_qs(request.content.read().decode())
        assertion = form["assertion"][0]
        signing, signature = assertion.rsplit(".", 1)
        self.fcm_key.public_key().verify(unb64(signature), signing.encode(),
                                         padding.PKCS1v15(), hashes.SHA256())
        claims = json.loads(unb64(signing.split(".")[1]))
        assert claims["aud"] == f"{self.url}/token", claims
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        self.token_requests += 1
        token = f"token-{self.token_requests}"
        self.tokens.add(token)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"access_token": token, "expires_in": 3600,
                           "token_type": "Bearer"}).encode()

    def fcm(self, request: Any) -> bytes:
        """messages:send: the bearer token must be one this service issued."""
        auth = (request.getHeader(b"authorization") or b"").decode()
        if auth.removeprefix("Bearer ") not in self.tokens:
            request.setResponseCode(401)
            return b"{}"
        message = json.loads(request.content.read())["message"]
        inbox = self.inbox("fcm:" + message["token"])
        if inbox.answer != 201 and inbox.answer != 200:
            request.setResponseCode(int(inbox.answer))
            return json.dumps({"error": {"status": "NOT_FOUND", "details": [
                {"errorCode": "UNREGISTERED"}]}}).encode()
        inbox.add({"headers": {}, "payload": message})
        return json.dumps({"name": "projects/chatd-test/messages/1"}).encode()
