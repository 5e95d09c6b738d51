"""Live-only frames (TYPING, READ receipts, the "kicked" NOTICE) for a user whose devices are on
several nodes: every online device gets them, whichever node the sender is on
(docs/protocol.md, *Typing*, *Read markers*, KICK_MEMBER: "on every online device").

Alice has her laptop on node 1 and her phone on node 2. Each frame comes from a user on node
3 (no device of alice's there), on node 1 (beside her laptop) and on node 2 (beside her phone),
so neither a node without her devices nor the luck of which node is next to the sender can
hide a device that is left out."""

from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from chatd.messages import MsgId
from tests.harness import WAIT, Client, connect, device, register
from tests.test_cluster import Cluster

ONE_CHAT, SEND_ACK, READ, TYPING = MsgId.ONE_CHAT, MsgId.SEND_ACK, MsgId.READ, MsgId.TYPING
KICK, KICK_ACK, NOTICE = MsgId.KICK_MEMBER, MsgId.KICK_MEMBER_ACK, MsgId.NOTICE


class LiveFramesToEveryDeviceTests(TestCase):
    timeout = 120

    async def _alice(self) -> tuple[int, dict[str, Client], list[tuple[str, Client]]]:
        """A three-node cluster; alice's devices {"laptop" on node 1, "phone" on node 2},
        and one friend of hers on each node: [(where, friend)]."""
        cluster = await Cluster(self).start(3)
        n1, n2, n3 = cluster.nodes
        alice = await register(await connect(self, n1), "alice")
        laptop, _ = await device(self, n1, alice, "laptop")
        phone, _ = await device(self, n2, alice, "phone")
        friends = []
        for where, node, name in (("node 3 (no device of alice's)", n3, "carol"),
                                  ("node 1 (beside alice's laptop)", n1, "bob"),
                                  ("node 2 (beside alice's phone)", n2, "dave")):
            friend = await cluster.user(node, name)
            ack = await friend.request({"msgid": 7, "friendid": alice}, 12)
            self.assertEqual(ack["errno"], 0, ack)
            friends.append((where, friend))
        return alice, {"laptop": laptop, "phone": phone}, friends

    async def _every_device_gets(self, devices: dict[str, Client], want: dict[str, Any]
                                 ) -> list[str]:
        """Wait (at the same time) for each device to get the frame `want`; the names of the
        devices that did not."""
        async def one(name: str, client: Client) -> str | None:
            try:
                got = await client.recv(**want)
            except AssertionError:
                return name
            self.assertEqual(got, want)
            return None
        missed = await gatherResults([Deferred.fromCoroutine(one(name, client))
                                      for name, client in devices.items()])
        return [m for m in missed if m is not None]

    async def _check(self, what: str, missed: dict[str, list[str]],
                     devices: dict[str, Client], msgid: int) -> None:
        missed = {where: names for where, names in missed.items() if names}
        if missed:
            self.fail(f"{what} did not reach every device of alice's within {WAIT}s; from a "
                      "sender on " + "; on ".join(f"{where}, not her {' or '.join(names)}"
                                                  for where, names in missed.items()))
        for name, client in devices.items():
            again = [f for f in await client.quiet() if f["msgid"] == msgid]
            self.assertEqual(again, [], f"alice's {name} got {what} twice")

    async def test_typing_reaches_every_device(self):
        alice, devices, friends = await self._alice()
        missed = {}
        for where, friend in friends:
            friend.send({"msgid": TYPING, "to": alice})
            missed[where] = await self._every_device_gets(
                devices, {"msgid": TYPING, "id": friend.user_id, "to": alice})
        await self._check("TYPING", missed, devices, TYPING)

    async def test_read_receipt_reaches_every_device(self):
        alice, devices, friends = await self._alice()
        missed = {}
        for where, friend in friends:
            cid = f"to {friend.user_id}"
            devices["laptop"].send({"msgid": ONE_CHAT, "to": friend.user_id, "msg": "hi",
                                    "cid": cid})
            mid = (await friend.recv(ONE_CHAT, cid=cid))["mid"]
            await devices["laptop"].recv(SEND_ACK, cid=cid)
            friend.send({"msgid": READ, "peer": alice, "mid": mid})
            missed[where] = await self._every_device_gets(
                devices, {"msgid": READ, "peer": alice, "mid": mid, "id": friend.user_id})
        await self._check("the READ receipt", missed, devices, READ)

    async def test_kicked_notice_reaches_every_device(self):
        alice, devices, friends = await self._alice()
        missed = {}
        for where, creator in friends:
            created = await creator.request({"msgid": 8, "groupname": f"g{creator.user_id}"},
                                            13)
            gid = created["groupid"]
            joined = await devices["laptop"].request({"msgid": 9, "groupid": gid}, 14)
            self.assertEqual(joined["errno"], 0, joined)
            kicked = await creator.request({"msgid": KICK, "groupid": gid, "userid": alice},
                                           KICK_ACK)
            self.assertEqual(kicked["errno"], 0, kicked)
            missed[where] = await self._every_device_gets(
                devices, {"msgid": NOTICE, "kind": "kicked", "groupid": gid})
        await self._check("NOTICE kicked", missed, devices, NOTICE)
