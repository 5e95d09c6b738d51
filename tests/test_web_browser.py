"""The web client in a real headless Chromium against real nodes: what two people see when
they use it. Each test leaves desktop and phone screenshots in its temporary folder."""

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase

from chatd.codec import encode
from chatd.messages import MsgId
from chatd.web.site import web_factory
from tests.browser import Browser
from tests.harness import serve_web, start_node, user
from tests.test_cluster import Cluster

XSS = "<img src=x onerror=alert(1)>"


# "sent" must come from the other browser's RECV_ACK, never from the ack timeout's storing.
NO_ACK_TIMEOUT = ("--ack-timeout", "120")


async def web_node(case: TestCase):
    return await serve_web(case, await start_node(case, None, *NO_ACK_TIMEOUT))


async def pair(case: TestCase, url: str, url_b: str | None = None):
    """alice and bob registered in two browsers, friends both ways, alice's chat with bob
    open in her window."""
    alice = await Browser.open(case, url, "alice")
    bob = await Browser.open(case, url_b or url, "bob")
    a_id = await alice.do(alice.register, "alice")
    b_id = await bob.do(bob.register, "bob")
    await alice.do(alice.add_friend, b_id)
    await bob.do(bob.add_friend, a_id)
    await alice.do(alice.open_chat, f"u:{b_id}")
    return alice, bob, a_id, b_id


async def browser_and_terminal(case: TestCase):
    """alice in a browser, bob on a TCP connection (acknowledging what he gets)."""
    web = await web_node(case)
    browser = await Browser.open(case, web.url, "alice")
    a_id = await browser.do(browser.register, "alice")
    terminal = await user(case, web.node, "bob")
    terminal.auto_ack = True
    return web, browser, a_id, terminal


class BrowserTests(TestCase):
    timeout = 120

    async def test_two_browser_users_register_befriend_and_chat(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await alice.do(alice.shows, f'#friends [data-key="u:{b_id}"] .presence.online', "")
        await alice.do(alice.say, "hello bob")
        await bob.do(bob.shows, f'[data-key="u:{a_id}"] .badge', "1")
        await alice.do(alice.wait, lambda: alice.states() == ["sent"],
                       "sent once bob's browser has it")
        await bob.do(bob.open_chat, f"u:{a_id}")
        await bob.do(bob.shows, "#messages .text", "hello bob")
        self.assertEqual(await bob.do(bob.all, f'[data-key="u:{a_id}"] .badge'), [],
                         "reading clears the badge")
        await bob.do(bob.say, "hi alice, multi\nline")
        await alice.do(alice.wait, lambda: alice.messages() == ["hello bob",
                                                                "hi alice, multi\nline"],
                       "bob's answer")
        await alice.do(alice.wait, lambda: alice.find("#text") == alice.driver.switch_to
                       .active_element, "the composer keeps the keyboard focus")
        self.assertEqual(await alice.do(alice.console), [])
        await alice.do(alice.screenshots, "chat")
        await bob.do(bob.screenshots, "chat")

    async def test_the_read_receipt_and_the_typing_indicator_appear(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await alice.do(alice.say, "are you there?")
        await alice.do(alice.wait, lambda: alice.states() == ["sent"], "sent")
        await bob.do(bob.open_chat, f"u:{a_id}")
        await alice.do(alice.wait, lambda: alice.states() == ["read"],
                       "read once bob has the conversation open")
        await bob.do(bob.find("#text").send_keys, "yes, just")
        await alice.do(alice.shows, "#typing", "bob is typing…")
        await alice.do(alice.screenshots, "read-and-typing")
        await alice.do(alice.wait, lambda: alice.text("#typing") == "",
                       "the indicator goes when the typing stops", 10)

    async def test_history_comes_from_the_server_and_scrolling_up_loads_older_pages(self):
        web, first, a_id, terminal = await browser_and_terminal(self)
        await terminal.request({"msgid": MsgId.ADD_FRIEND, "friendid": a_id}, MsgId.ADD_FRIEND_ACK)
        for i in range(70):
            terminal.send({"msgid": MsgId.ONE_CHAT, "to": a_id, "msg": f"m{i}", "cid": f"c{i}"})
        for i in range(70):
            await terminal.recv(MsgId.SEND_ACK, cid=f"c{i}")
        await first.do(first.driver.quit)
        other = await Browser.open(self, web.url, "alice-elsewhere")
        await other.do(other.log_in, a_id)
        await other.do(other.open_chat, f"u:{terminal.user_id}")
        await other.do(other.wait, lambda: other.messages() == [f"m{i}" for i in range(20, 70)],
                       "the newest page from the server")
        await other.do(other.scroll_to_top)
        await other.do(other.wait, lambda: other.messages() == [f"m{i}" for i in range(70)],
                       "the older page after scrolling up")
        await other.do(other.screenshots, "history")

    async def test_a_group_is_created_joined_used_and_a_member_removed(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await alice.do(alice.type, "#group-name", "team\n")
        found = await alice.do(alice.wait, lambda: alice.all('#groups [data-key^="g:"]'),
                               "the new group in the list")
        key = await alice.do(found[0].get_attribute, "data-key")
        await bob.do(bob.type, "#join-group-id", key[2:] + "\n")
        await bob.do(bob.wait, lambda: bob.all(f'[data-key="{key}"]'), "the group joined")
        await alice.do(alice.open_chat, key)
        await alice.do(alice.wait, lambda: "bob" in alice.text("#members"),
                       "bob among the members")
        await alice.do(alice.say, "hi team")
        await bob.do(bob.shows, f'[data-key="{key}"] .badge', "1")
        await bob.do(bob.open_chat, key)
        await bob.do(bob.shows, "#messages .who", "alice")
        await alice.do(alice.screenshots, "group")
        await alice.do(alice.find("#members .kick").click)
        await bob.do(bob.shows, "#notice", f"You were removed from group {key[2:]}.")
        await bob.do(bob.wait, lambda: not bob.all(f'[data-key="{key}"]'), "the group gone")
        await alice.do(alice.wait, lambda: "bob" not in alice.text("#members"),
                       "bob no longer a member")

    async def test_a_reload_keeps_the_login_and_the_history(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await alice.do(alice.say, "before the reload")
        await bob.do(bob.shows, f'[data-key="u:{a_id}"] .badge', "1")
        await bob.do(bob.reload)
        await bob.do(bob.wait, lambda: bob.text("#conn") == "online", "online again")
        self.assertEqual(await bob.do(bob.text, "#me"), f"bob (id {b_id})")
        await bob.do(bob.open_chat, f"u:{a_id}")
        await bob.do(bob.shows, "#messages .text", "before the reload")
        await alice.do(alice.reload)
        await alice.do(alice.wait, lambda: alice.text("#conn") == "online", "online again")
        await alice.do(alice.open_chat, f"u:{b_id}")
        await alice.do(alice.wait, lambda: alice.messages() == ["before the reload"]
                       and alice.states() == ["read"], "her message, read by bob")
        await bob.do(bob.say, "after the reload")
        await alice.do(alice.shows, "#messages .text", "after the reload")
        await bob.do(bob.screenshots, "reloaded")

    async def test_a_message_typed_while_the_link_is_down_is_sent_when_it_is_back(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await web.listener.stopListening()
        for session in list(web.node.node.factory.sessions):
            if session.user_id == a_id:
                session.transport.abortConnection()
        await alice.do(alice.wait, lambda: alice.text("#conn").startswith("offline"),
                       "the connection shown as down")
        await alice.do(alice.say, "typed while offline")
        await alice.do(alice.wait, lambda: alice.states() == ["sending"], "still sending")
        web.listener = await TCP4ServerEndpoint(reactor, web.port, interface="127.0.0.1").listen(
            web_factory(web.node.node.factory, frozenset()))
        self.addCleanup(web.listener.stopListening)
        await alice.do(alice.wait, lambda: alice.states() == ["sent"], "sent after the reconnect",
                       30)
        await bob.do(bob.open_chat, f"u:{a_id}")
        await bob.do(bob.wait, lambda: bob.messages() == ["typed while offline"], "exactly once")
        await alice.do(alice.screenshots, "reconnected")

    async def test_a_browser_user_and_a_tcp_client_user_chat(self):
        _, browser, a_id, terminal = await browser_and_terminal(self)
        await browser.do(browser.add_friend, terminal.user_id)
        await browser.do(browser.open_chat, f"u:{terminal.user_id}")
        await browser.do(browser.say, "from the browser")
        got = await terminal.recv(MsgId.ONE_CHAT)
        self.assertEqual((got["id"], got["name"], got["msg"]), (a_id, "alice", "from the browser"))
        await browser.do(browser.wait, lambda: browser.states() == ["sent"], "sent")
        terminal.send({"msgid": MsgId.ONE_CHAT, "to": a_id, "msg": "from the terminal",
                       "cid": "t1"})
        await browser.do(browser.shows, "#messages .text", "from the terminal")
        ack = await terminal.recv(MsgId.SEND_ACK, cid="t1")
        self.assertEqual(ack["errno"], 0, "the browser acknowledged what it showed")
        await browser.do(browser.screenshots, "with-tcp")

    async def test_a_burst_is_acknowledged_in_a_few_recv_acks_not_one_each(self):
        web, browser, a_id, terminal = await browser_and_terminal(self)
        await browser.do(browser.add_friend, terminal.user_id)
        frames_in = web.node.node.stats.frames_in
        before = frames_in[MsgId.RECV_ACK]
        burst = 30
        terminal.send(b"".join(encode({"msgid": MsgId.ONE_CHAT, "to": a_id, "msg": f"m{i}",
                                       "cid": f"b{i}"}) for i in range(burst)), end=b"")
        for i in range(burst):
            ack = await terminal.recv(MsgId.SEND_ACK, cid=f"b{i}")
            self.assertEqual(ack["errno"], 0, "the browser acknowledged every message")
        acks = frames_in[MsgId.RECV_ACK] - before
        self.assertGreater(acks, 0)
        self.assertLess(acks, burst // 2, "read within 50 ms, acknowledged together")

    async def test_html_in_a_message_is_shown_as_text_and_runs_nothing(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await alice.do(alice.say, XSS)
        await bob.do(bob.open_chat, f"u:{a_id}")
        await bob.do(bob.shows, "#messages .text", XSS)
        self.assertEqual(await bob.do(bob.messages), [XSS])
        self.assertEqual(await bob.do(bob.all, "#messages img"), [])
        self.assertEqual(await alice.do(alice.all, "#messages img"), [])
        for browser in (alice, bob):
            self.assertIsNone(await browser.do(browser.alert), "no script ran")
        await bob.do(bob.screenshots, "html-as-text")

    async def test_two_browsers_on_two_nodes_through_nginx(self):
        cluster = await Cluster(self).start(2, *NO_ACK_TIMEOUT, web=True)
        alice, bob, a_id, b_id = await pair(self, cluster.nginx.url)
        logs = [node.log() for node in cluster.nodes]
        self.assertEqual(sorted(sum(f"user {uid} logged in" in log for log in logs)
                                for uid in (a_id, b_id)), [1, 1])
        self.assertNotEqual([f"user {a_id} logged in" in log for log in logs],
                            [f"user {b_id} logged in" in log for log in logs],
                            "least_conn puts the two browsers on different nodes")
        await alice.do(alice.say, "across the cluster")
        await bob.do(bob.open_chat, f"u:{a_id}")
        await bob.do(bob.shows, "#messages .text", "across the cluster")
        await alice.do(alice.wait, lambda: alice.states() == ["read"],
                       "the read receipt from the other node")
        await bob.do(bob.say, "and back")
        await alice.do(alice.shows, "#messages .text", "and back")
        await alice.do(alice.screenshots, "cluster")
