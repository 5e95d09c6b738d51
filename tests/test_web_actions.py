"""Message actions in the web client, in real headless Chromium against a real node: reply,
react, edit and recall through the message menu (and ↑ in the composer), with the other
browser updating live, and what both see after a reload."""

from selenium.webdriver.common.keys import Keys
from twisted.trial.unittest import TestCase

from chatd.messages import MsgId
from tests.test_web_browser import browser_and_terminal, pair, web_node


def menu(browser, text: str, choice: str) -> None:
    """Open the menu of the message showing `text` and click `choice`. The list may be
    drawn again between finding an element and clicking it (a receipt, a reply), so each
    click is a wait's attempt, tried again on a stale element (it failed once in CI)."""
    def open_menu() -> bool:
        return click(next((e.find_element("css selector", ".more")
                           for e in browser.all("#messages .message")
                           if e.find_element("css selector", ".text").text == text), None))

    def pick() -> bool:
        return click(next((b for b in browser.all(".action-menu button") if b.text == choice),
                          None))

    browser.wait(open_menu, f"the message {text!r}")
    browser.wait(pick, f"{choice!r} in the menu")


def click(element) -> bool:
    """Click `element` when there is one; whether it was clicked."""
    if element is None:
        return False
    element.click()
    return True


def bubbles(browser) -> list[tuple[str, str]]:
    """(quote, text) of every message shown."""
    out = []
    for item in browser.all("#messages .message"):
        quotes = item.find_elements("css selector", ".quote")
        out.append((quotes[0].text if quotes else "",
                    item.find_element("css selector", ".text").text))
    return out


def chips(browser) -> list[str]:
    return [e.text for e in browser.all("#messages .chip")]


class WebActionTests(TestCase):
    timeout = 180

    async def test_reply_react_edit_recall_through_the_menu_update_the_other_browser(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await alice.do(alice.say, "lunch at noon?")
        await bob.do(bob.open_chat, f"u:{a_id}")
        await bob.do(bob.shows, "#messages .text", "lunch at noon?")
        await alice.do(alice.wait, lambda: alice.all("#messages .message .more"), "the menu")

        await bob.do(menu, bob, "lunch at noon?", "Reply")
        await bob.do(bob.shows, "#reply-bar", "Reply to alice")
        await bob.do(bob.say, "yes!")
        await alice.do(alice.wait, lambda: bubbles(alice)[-1] == ("alice lunch at noon?", "yes!"),
                       "bob's reply with its quote")

        await bob.do(menu, bob, "lunch at noon?", "React")
        await bob.do(bob.wait, lambda: bob.all(".emoji-row button"), "the emoji")
        await bob.do(lambda: bob.all(".emoji-row button")[0].click())
        await alice.do(alice.wait, lambda: chips(alice) == ["👍 1"], "bob's reaction live")

        await alice.do(alice.find("#text").send_keys, Keys.ARROW_UP)
        await alice.do(alice.shows, "#reply-bar", "Edit message")
        await alice.do(alice.type, "#text", "lunch at 12:30?\n")
        await bob.do(bob.wait, lambda: bubbles(bob)[0] == ("", "lunch at 12:30?"), "the edit")
        await bob.do(bob.shows, "#messages .edited", "edited")

        await alice.do(menu, alice, "lunch at 12:30?", "Recall")
        await bob.do(bob.wait, lambda: bubbles(bob) == [
            ("", "alice recalled a message"), ("alice (recalled)", "yes!")], "the recall live")
        await alice.do(alice.shows, "#messages .recalled .text", "You recalled a message")
        await bob.do(bob.screenshots, "actions")

        await bob.do(bob.reload)
        await bob.do(bob.wait, lambda: bob.text("#conn") == "online", "online again")
        await bob.do(bob.open_chat, f"u:{a_id}")
        await bob.do(bob.wait, lambda: bubbles(bob) == [
            ("", "alice recalled a message"), ("alice (recalled)", "yes!")], "after a reload")
        self.assertEqual(await bob.do(bob.console), [])
        self.assertEqual(await alice.do(alice.console), [])

    async def test_delete_for_me_leaves_the_other_browser_alone(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await alice.do(alice.say, "keep or drop")
        await bob.do(bob.open_chat, f"u:{a_id}")
        await bob.do(bob.shows, "#messages .text", "keep or drop")
        await bob.do(menu, bob, "keep or drop", "Delete for me")
        await bob.do(bob.wait, lambda: bob.messages() == [], "gone for bob")
        await bob.do(bob.reload)
        await bob.do(bob.wait, lambda: bob.text("#conn") == "online", "online again")
        await bob.do(bob.open_chat, f"u:{a_id}")
        await alice.do(alice.wait, lambda: alice.messages() == ["keep or drop"], "alice keeps it")
        self.assertEqual(await bob.do(bob.messages), [])

    async def test_a_terminal_user_and_a_browser_act_on_each_others_messages(self):
        web, alice, a_id, bob = await browser_and_terminal(self)
        await bob.request({"msgid": MsgId.ADD_FRIEND, "friendid": a_id}, MsgId.ADD_FRIEND_ACK)
        bob.send({"msgid": MsgId.ONE_CHAT, "to": a_id, "msg": "from the terminal", "cid": "t"})
        mid = (await bob.recv(MsgId.SEND_ACK, cid="t"))["mid"]
        await alice.do(alice.open_chat, f"u:{bob.user_id}")
        await alice.do(alice.shows, "#messages .text", "from the terminal")
        await alice.do(menu, alice, "from the terminal", "React")
        await alice.do(alice.wait, lambda: alice.all(".emoji-row button"), "the emoji")
        await alice.do(lambda: alice.all(".emoji-row button")[1].click())
        got = await bob.recv(MsgId.REACTION, mid=mid)
        self.assertEqual((got["id"], got["emoji"], got["on"]), (a_id, "❤️", True))
        await bob.request({"msgid": MsgId.EDIT, "mid": mid, "msg": "edited in the terminal"},
                          MsgId.EDIT_ACK)
        await alice.do(alice.wait, lambda: bubbles(alice) == [("", "edited in the terminal")],
                       "the terminal's edit")
        await bob.request({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK)
        await alice.do(alice.wait, lambda: bubbles(alice) == [("", "bob recalled a message")],
                       "the terminal's recall")
