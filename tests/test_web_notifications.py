"""The web client's notifications in a real headless Chromium against a real node and the
local push service of tests/pushservice.py: the switch registers the service worker and
sends the subscription (headless Chromium reaches no push service, so the page's
PushManager is a stand-in that returns a subscription on the local one), a message to the
user after the page is gone arrives there decryptable, per-conversation mute, and the `@`
completion and highlight of mentions."""

import json
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from chatd.messages import MsgId
from tests.browser import Browser
from tests.harness import serve_web, start_node, user
from tests.pushservice import PushService
from tests.test_cluster import eventually
from tests.test_push import PUSH_ARGS

# Runs before the page's own scripts: notification permission granted, and a PushManager
# that hands out the test's subscription (window.__subscribed counts the calls).
STAND_IN = """
Object.defineProperty(Notification, "permission", { get: () => "granted" });
Notification.requestPermission = async () => "granted";
window.__subscribed = 0;
const subscription = %s;
PushManager.prototype.getSubscription = async function () {
  return window.__subscribed ? this.__fake : null;
};
PushManager.prototype.subscribe = async function (options) {
  window.__subscribed += 1;
  window.__key = options.applicationServerKey.length;
  this.__fake = { toJSON: () => subscription, unsubscribe: async () => true };
  return this.__fake;
};
"""


async def browser_with_stand_in(case: TestCase, url: str, name: str,
                                subscription: dict[str, Any]) -> Browser:
    browser = await deferToThread(Browser, case, url, name)
    await browser.do(browser.driver.execute_cdp_cmd, "Page.addScriptToEvaluateOnNewDocument",
                     {"source": STAND_IN % json.dumps(subscription)})
    await browser.do(browser.driver.get, url)
    return browser


def worker_scope(browser: Browser) -> Any:
    return browser.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        navigator.serviceWorker.getRegistration("/").then((r) => done(r && r.active
          ? [r.scope, r.active.scriptURL] : null));""")


def close_page(browser: Browser) -> None:
    """The user closes the chat's tab (another tab keeps the browser running)."""
    page = browser.driver.current_window_handle
    browser.driver.switch_to.new_window("tab")
    blank = browser.driver.current_window_handle
    browser.driver.switch_to.window(page)
    browser.driver.close()
    browser.driver.switch_to.window(blank)


class WebNotificationTests(TestCase):
    timeout = 120

    async def test_the_switch_subscribes_and_a_push_arrives_when_the_page_is_gone(self):
        service = await PushService.start(self)
        node = await start_node(self, None, *PUSH_ARGS, "--push-vapid-key", self.mktemp())
        web = await serve_web(self, node)
        endpoint = service.subscription()
        alice = await browser_with_stand_in(self, web.url, "alice", endpoint.json())
        a_id = await alice.do(alice.register, "alice")
        await alice.do(alice.wait, lambda: alice.find("#push-switch").is_displayed(),
                       "the Notifications switch")
        await alice.do(lambda: alice.find("#push-toggle").click())
        await alice.do(alice.shows, "#push-status", "Notifications on")
        scope = await alice.do(alice.wait, lambda: worker_scope(alice), "the service worker")
        self.assertEqual(scope, [web.url, web.url + "sw.js"])
        self.assertEqual(await alice.do(alice.driver.execute_script,
                                        "return [window.__subscribed, window.__key]"),
                         [1, 65], "subscribed once with the node's VAPID key (65 bytes)")
        targets = await node.context.store.push_targets([a_id], 0, {a_id: 1})
        self.assertEqual([s.endpoint for s in targets[a_id].subscriptions],
                         [endpoint.endpoint])
        await alice.do(close_page, alice)
        await eventually(lambda: succeed(not node.context.router.online_here(a_id)), 5,
                         "alice's page gone")
        bob = await user(self, web.node, "bob")
        bob.send({"msgid": MsgId.ONE_CHAT, "to": a_id, "msg": "are you there?"})
        push = await service.received(endpoint.endpoint)
        self.assertEqual((push["title"], push["peer"]), ("New message from bob", bob.user_id))

    async def test_mute_mention_completion_and_highlight(self):
        node = await start_node(self, None, "--push-vapid-key", self.mktemp())
        web = await serve_web(self, node)
        bob = await user(self, web.node, "bob")
        carol = await user(self, web.node, "carol")
        bob.auto_ack = carol.auto_ack = True
        gid = (await bob.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team"},
                                 MsgId.CREATE_GROUP_ACK))["groupid"]
        await carol.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        alice = await Browser.open(self, web.url, "alice")
        a_id = await alice.do(alice.register, "alice")
        await alice.do(alice.type, "#join-group-id", f"{gid}\n")
        await alice.do(alice.open_chat, f"g:{gid}")
        await alice.do(lambda: alice.find("#mute").click())
        await alice.do(alice.shows, "#mute", "Unmute")
        self.assertEqual(await node.context.store.mutes(a_id, 0), [(gid, 0, -1)])
        await alice.do(alice.wait, lambda: len(alice.all("#members li")) == 3, "the members")
        await alice.do(lambda: alice.find("#text").send_keys("@ca"))
        await alice.do(alice.shows, "#mention-list li", "carol")
        await alice.do(alice.say_completed, "hello")
        got = await carol.recv(MsgId.GROUP_CHAT)
        self.assertEqual((got["msg"], got["mentions"]), ("@carol hello", [carol.user_id]))
        bob.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "@alice look",
                  "mentions": [a_id]})
        bob.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "not for you"})
        await alice.do(alice.shows, "#messages li.mention .text", "@alice look")
        self.assertEqual(await alice.do(lambda: [e.text for e in alice.all(
            "#messages li.mention .text")]), ["@alice look"])
        self.assertEqual(await alice.do(alice.console), [])
        await alice.do(alice.screenshots, "mention")
