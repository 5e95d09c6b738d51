"""A node whose MariaDB goes away, as its users see it: `twistd chatd` processes on a private
MariaDB that the tests stop and start again (same datadir, same port).

What users may expect (docs/protocol.md, *Delivery*, and errno 130): live chat between online
users goes on; a message for an offline user is held and stored once the database is back
(SEND_ACK errno 0), or, when the node gives up (about a minute of retries, or its
`--offline-buffer` full), answered with SEND_ACK errno 130 so that it is sent again: never
left unanswered; and a frame that reached a recipient's device but was never acknowledged is
"stored offline and sent again at the next login", even when the node is stopped while the
database is away.
"""

import time

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from tests.harness import Client, connect, deferLater, login, register, user
from tests.nodeproc import start_node
from tests.servers import mysql_database, private_mariadb

ONE_CHAT, ERROR, SEND_ACK = MsgId.ONE_CHAT, MsgId.ERROR, MsgId.SEND_ACK
HISTORY, HISTORY_ACK, UNAVAILABLE = MsgId.HISTORY, MsgId.HISTORY_ACK, Errno.UNAVAILABLE
OUTAGE = 20.0  # seconds the database is away while users chat
ANSWER_WAIT = 60.0  # after the database is back, for every message to be answered
EXIT_WAIT = 90.0  # for a node stopped during the outage to end by itself


def chat(to: int, text: str) -> dict:
    """A ONE_CHAT whose `cid` is its text."""
    return {"msgid": ONE_CHAT, "to": to, "msg": text, "cid": text}


def answers(sender: Client, cids: list[str]) -> dict[str, dict]:
    """The answers (SEND_ACK or ERROR_MSG) the sender has had so far to these cids."""
    return {f["cid"]: f for f in sender.frames
            if f.get("msgid") in (SEND_ACK, ERROR) and f.get("cid") in cids}


async def answered(sender: Client, cids: list[str], timeout: float) -> dict[str, dict]:
    """Poll until every cid is answered or `timeout` passes; the answers there are."""
    deadline = time.monotonic() + timeout
    while len(got := answers(sender, cids)) < len(cids) and time.monotonic() < deadline:
        await deferLater(0.2)
    return got


class StoreOutageTests(TestCase):
    timeout = 240

    async def _node(self, *args: str):
        """A private MariaDB and a node on a database of it: (server, database URL, node)."""
        server = private_mariadb()
        self.addCleanup(server.destroy)
        db = mysql_database(server.url)
        node = await start_node(self, "--db", db, "--ack-timeout", "2", *args)
        return server, db, node

    async def test_messages_to_an_offline_user_are_stored_once_the_database_is_back(self):
        """A 20 s outage is within the node's retries: every message to offline carol ends
        in SEND_ACK errno 0 once the database is back, and carol gets each once."""
        server, _, node = await self._node()
        alice = await user(self, node, "alice")
        bob = await user(self, node, "bob")
        alice.auto_ack = bob.auto_ack = True
        carol = await register(await connect(self, node), "carol")
        for friend in (bob.user_id, carol):
            await alice.request({"msgid": 7, "friendid": friend}, 12)

        server.stop()
        outage_ends = time.monotonic() + OUTAGE
        live: list[str] = []
        to_carol: list[str] = []
        turn = 0
        while time.monotonic() < outage_ends:
            for sender, receiver, name in ((alice, bob, "a"), (bob, alice, "b")):
                text = f"{name}{turn}"
                sender.send(chat(receiver.user_id, text))
                await receiver.recv(ONE_CHAT, msg=text)
                ack = await sender.recv(SEND_ACK, cid=text)
                self.assertEqual(ack["errno"], 0, f"live chat during the outage: {ack}")
                live.append(text)
            if turn % 3 == 0:
                text = f"to carol {turn}"
                alice.send(chat(carol, text))
                to_carol.append(text)
            turn += 1
            await deferLater(0.5)
        server.start()

        got = await answered(alice, to_carol, ANSWER_WAIT)
        self.assertEqual({cid: (f["msgid"], f["errno"]) for cid, f in got.items()},
                         dict.fromkeys(to_carol, (SEND_ACK, 0)),
                         f"every message to offline carol sent while the database was down is "
                         f"stored once it is back, within {ANSWER_WAIT:.0f}s")

        later = await login(await connect(self, node), carol)
        self.assertEqual(later["errno"], 0)
        self.assertEqual(sorted(m["msg"] for m in later["offlinemsg"]), sorted(to_carol),
                         "carol gets every message alice sent her, each once")
        page = await alice.request({"msgid": HISTORY, "peer": bob.user_id, "limit": 100},
                                   HISTORY_ACK)
        self.assertEqual(sorted(m["msg"] for m in page["messages"]), sorted(live),
                         "history keeps every live message of the outage, each once")

    async def test_past_the_offline_buffer_the_sender_is_told_to_send_again(self):
        """With --offline-buffer 20, 40 messages to offline carol during an outage: the
        ones the node cannot hold get SEND_ACK errno 130 at once, the held ones SEND_ACK 0
        once the database is back; every message is answered, carol gets exactly the ones
        acknowledged, and alice, sending the refused ones again, gets them through."""
        server, _, node = await self._node("--offline-buffer", "20")
        alice = await user(self, node, "alice")
        carol = await register(await connect(self, node), "carol")
        await alice.request({"msgid": 7, "friendid": carol}, 12)
        server.stop()
        to_carol = [f"to carol {i}" for i in range(40)]
        for text in to_carol:
            alice.send(chat(carol, text))
        refused = await answered(alice, to_carol, 10)
        self.assertGreaterEqual(len(refused), 20, "past the buffer, answered at once")
        self.assertEqual({(f["msgid"], f["errno"], f.get("errmsg")) for f in refused.values()},
                         {(SEND_ACK, UNAVAILABLE, "service temporarily unavailable, try again")})
        server.start()
        got = await answered(alice, to_carol, ANSWER_WAIT)
        self.assertEqual(sorted(set(to_carol) - set(got)), [], "every message is answered")
        held = [cid for cid, f in got.items() if cid not in refused]
        self.assertEqual({(got[cid]["msgid"], got[cid]["errno"]) for cid in held},
                         {(SEND_ACK, 0)})
        await alice.quiet(0)  # the answers read so far
        for cid in refused:  # sent again, with the same cid
            ack = await alice.request(chat(carol, cid), SEND_ACK, cid=cid)
            self.assertEqual(ack["errno"], 0, f"sent again after the outage: {ack}")
        later = await login(await connect(self, node), carol)
        self.assertEqual(sorted(m["msg"] for m in later["offlinemsg"]), sorted(to_carol),
                         "carol gets every message, each once")

    async def test_a_node_stopped_while_the_database_is_down_keeps_what_it_owes(self):
        """Bob's device is shown messages and loses its connection without acknowledging
        them while MariaDB is down: the node owes them to the store ("still unacknowledged
        when the recipient's session ends, is stored offline and sent again at the next
        login"). The node is stopped (SIGTERM) while the database is still down, and the
        database comes back a moment later: the node must end by itself within EXIT_WAIT,
        and bob, logging in later on a fresh node, gets every one of them. Whatever alice
        was acknowledged (SEND_ACK errno 0), to bob or to offline carol, reaches them too;
        only what alice got errno 130 for, or no answer at all, may be missing."""
        server, db, node = await self._node()
        alice = await user(self, node, "alice")
        alice.auto_ack = True
        bob = await user(self, node, "bob")  # shows what it gets, acknowledges nothing
        carol = await register(await connect(self, node), "carol")
        for friend in (bob.user_id, carol):
            await alice.request({"msgid": 7, "friendid": friend}, 12)

        server.stop()
        to_bob = [f"to bob {i}" for i in range(5)]
        to_carol = [f"to carol {i}" for i in range(5)]
        for text in to_bob:
            alice.send(chat(bob.user_id, text))
        for text in to_bob:
            await bob.recv(ONE_CHAT, msg=text)
        for text in to_carol:
            alice.send(chat(carol, text))
        await answered(alice, to_carol, 2)
        bob.transport.loseConnection()
        await bob.closed
        await deferLater(1)  # the node has seen bob go: it now owes his frames to the store

        stopping = Deferred.fromCoroutine(node.stop("TERM", timeout=EXIT_WAIT))
        await deferLater(2)
        server.start()
        ended = await stopping
        acknowledged = {cid for cid, f in answers(alice, to_bob + to_carol).items()
                        if f["msgid"] == SEND_ACK and f["errno"] == 0}
        self.assertTrue(ended, f"the node stopped during the outage did not end within "
                               f"{EXIT_WAIT:.0f}s of SIGTERM (the database was back after 2s); "
                               f"log:\n{node.log()[-3000:]}")

        fresh = await start_node(self, "--db", db)
        for who, owed, sent in ((bob.user_id, set(to_bob), to_bob),
                                (carol, set(), to_carol)):
            reply = await login(await connect(self, fresh), who)
            self.assertEqual(reply["errno"], 0, reply)
            got = [m["msg"] for m in reply["offlinemsg"]]
            self.assertEqual(len(got), len(set(got)), f"user {who} got a message twice: {got}")
            must = [t for t in sent if t in owed or t in acknowledged]
            self.assertEqual([t for t in must if t not in got], [],
                             f"user {who} lost messages the node had acknowledged to alice "
                             f"or owed to the store when it was stopped (offlinemsg: {got}; "
                             f"acknowledged to alice: {sorted(acknowledged)})")
