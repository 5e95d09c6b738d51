"""The web client's account, people and group-admin parts (chatd/web/static/accounts.js) in
a real headless Chromium against a real node: a friend request found by name and accepted,
an invite link followed, a role given and shown to the member."""

from twisted.trial.unittest import TestCase

from tests.browser import Browser
from tests.harness import serve_web, start_node


class AccountBrowserTests(TestCase):
    timeout = 120

    async def test_a_friend_request_accepted_an_invite_followed_and_a_role_given(self):
        web = await serve_web(self, await start_node(self, None, "--ack-timeout", "120"))
        alice = await Browser.open(self, web.url, "alice")
        bob = await Browser.open(self, web.url, "bob")
        a_id = await alice.do(alice.register, "alice")
        b_id = await bob.do(bob.register, "bob")
        await bob.do(bob.find("#account summary").click)
        await bob.do(bob.find("#friend-requests option[value=approve]").click)
        await bob.do(bob.find("#settings-form button").click)
        await bob.do(bob.shows, "#account-status", "Settings saved.")

        await alice.do(alice.find("#account summary").click)
        await alice.do(alice.type, "#find-name", "BOB\n")
        await alice.do(alice.shows, "#found li span", f"bob (id {b_id})")
        await alice.do(alice.find("#found .add").click)
        await alice.do(alice.shows, "#side-status",
                       "friend request sent: the user must accept it")
        await bob.do(bob.shows, "#requests li span", f"alice (id {a_id})")
        await bob.do(bob.screenshots, "friend-request")
        await bob.do(bob.find("#requests .accept").click)
        await bob.do(bob.wait, lambda: bob.all(f'#friends [data-key="u:{a_id}"]'),
                     "alice among bob's friends")
        await alice.do(alice.wait, lambda: alice.all(f'#friends [data-key="u:{b_id}"]'),
                       "bob among alice's friends")
        await alice.do(alice.shows, "#notice", "bob accepted your friend request.")

        await alice.do(alice.type, "#group-name", "team\n")
        found = await alice.do(alice.wait, lambda: alice.all('#groups [data-key^="g:"]'),
                               "the new group")
        key = await alice.do(found[0].get_attribute, "data-key")
        await alice.do(alice.open_chat, key)
        await alice.do(alice.find("#invite-button").click)
        link = await alice.do(alice.wait, lambda: alice.text("#invite-link"), "the link")
        self.assertRegex(link, rf"^{web.url}#join=[\w-]+$")
        await bob.do(bob.driver.get, link)
        await bob.do(bob.wait, lambda: bob.all(f'#groups [data-key="{key}"]'),
                     "the group joined through the link")

        await alice.do(alice.type, "#role-user", str(b_id))
        await alice.do(alice.find("#role-form button").click)
        await alice.do(alice.shows, "#account-status", "Role set.")
        await bob.do(bob.open_chat, key)
        await bob.do(bob.wait, lambda: "bob (admin)" in bob.text("#members"),
                     "bob shown as admin")
        await bob.do(bob.wait, lambda: bob.find("#group-admin").is_displayed(),
                     "an admin gets the group's admin tools")
        await bob.do(bob.type, "#announce-text", "meeting at 10\n")
        await alice.do(alice.shows, "#announcement", "meeting at 10")
        await alice.do(alice.screenshots, "group-admin")
        self.assertEqual(await alice.do(alice.console), [])
        self.assertEqual(await bob.do(bob.console), [])
