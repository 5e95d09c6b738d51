"""Hostile clients against a real node over real TCP: each test is a row of docs/security.md's
threat table and fails without its defence."""

import datetime
import os
import time

import ujson
from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from tests.harness import connect, deferLater, login, register, start_node, user
from tests.nodeproc import start_node as start_process
from tests.servers import mysql_database, start_nginx, start_redis
from tests.test_client_process import sign_up, start_client

BIG = "x" * 30_000


async def silent_reader(case: TestCase, proto: int | None) -> None:
    """A user stops reading while two others send it 9 MB: the node ends its session instead
    of buffering, and every message reaches it at its next login."""
    node = await start_node(case, None, "--max-send-buffer", "65536")
    reader = await user(case, node, "reader", proto=proto)
    reader_id = reader.user_id
    reader.transport.pauseProducing()
    senders = [await user(case, node, f"sender{i}") for i in range(2)]
    count = 150
    for i in range(count):
        for n, sender in enumerate(senders):
            sender.send({"msgid": MsgId.ONE_CHAT, "to": reader_id, "msg": BIG, "cid": f"{n}-{i}"})
    for n, sender in enumerate(senders):
        for i in range(count):
            ack = await sender.recv(MsgId.SEND_ACK, timeout=30, cid=f"{n}-{i}")
            case.assertEqual(ack["errno"], 0)
    case.assertFalse(node.context.router.online_here(reader_id))
    reader.transport.resumeProducing()
    await reader.closed
    seen = {f["mid"] for f in reader.frames if f.get("msgid") == MsgId.ONE_CHAT}
    again = await connect(case, node)
    ack = await login(again, reader_id, proto=proto)
    offline = [m if isinstance(m, dict) else ujson.loads(m)
               for m in ack.get("offlinemsg", [])]
    seen |= {m["mid"] for m in offline}
    deadline = time.monotonic() + 30
    while len(seen) < 2 * count and time.monotonic() < deadline:
        await deferLater(0.2)
        seen |= {f["mid"] for f in again.frames if f.get("msgid") == MsgId.ONE_CHAT}
    case.assertEqual(len(seen), 2 * count)


class SlowConsumerTests(TestCase):
    timeout = 120

    async def test_silent_proto_2_reader_is_closed_and_loses_nothing(self):
        await silent_reader(self, 2)

    async def test_silent_original_dialect_reader_is_closed_and_loses_nothing(self):
        await silent_reader(self, None)

    async def test_a_sender_that_never_reads_its_acks_is_closed(self):
        node = await start_node(self, None, "--max-send-buffer", "65536")
        friend = await user(self, node, "friend")
        friend.auto_ack = True
        sender = await user(self, node, "sender")
        sender.transport.pauseProducing()
        for i in range(20_000):
            sender.send({"msgid": 99, "pad": "y" * 100, "n": i})
        sender.transport.resumeProducing()
        await sender.closed
        self.assertFalse(any(s.user_id == sender.user_id for s in node.node.factory.sessions))


class LoginTests(TestCase):
    timeout = 120

    async def test_a_login_flood_on_one_connection_does_not_delay_another_login(self):
        node = await start_node(self, None, "--password-cost", "14", "--login-failures", "1000",
                                "--address-failures", "100000")
        owner = await connect(self, node)
        owner_id = await register(owner, "owner")
        other = await connect(self, node)
        other_id = await register(other, "other")
        started = time.monotonic()
        self.assertEqual((await login(other, other_id))["errno"], 0)
        quiet = time.monotonic() - started  # one login on this machine, as loaded as it is
        flood = await connect(self, node)
        for i in range(3000):
            flood.send({"msgid": MsgId.LOGIN, "id": 1000 + i, "password": "guess"})
        await flood.recv(MsgId.LOGIN_ACK, errno=Errno.HASH_PENDING)
        started = time.monotonic()
        ack = await login(owner, owner_id)
        self.assertEqual(ack["errno"], 0)
        # Behind the flood's queued hashes it would take thousands of logins' time; the
        # flood's one hash in progress may be ahead of it, so a few.
        self.assertLess(time.monotonic() - started, max(1.0, 10 * quiet))

    async def test_a_guesser_is_throttled_the_owner_is_not_and_the_throttle_lifts(self):
        node = await start_node(self, None, "--login-backoff", "2")
        owner = await connect(self, node)
        owner_id = await register(owner, "owner")
        guesser = await connect(self, node)
        refused = []
        for _ in range(10):
            refused.append((await login(guesser, owner_id, "guess"))["errno"])
        self.assertEqual(refused, [1] * 5 + [142] * 5)
        ack = await login(guesser, owner_id)
        self.assertEqual(ack["errno"], Errno.THROTTLED)
        self.assertIn(ack["retry_after"], (1, 2))
        elsewhere = await connect(self, node, "127.0.0.2")
        self.assertEqual((await login(elsewhere, owner_id))["errno"], 0)
        await elsewhere.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        await deferLater(ack["retry_after"])
        self.assertEqual((await login(guesser, owner_id))["errno"], 0)


class AddressTests(TestCase):

    async def test_connections_per_address_are_limited(self):
        node = await start_node(self, None, "--max-conns-per-address", "3")
        clients = [await connect(self, node) for _ in range(3)]
        fourth = await connect(self, node)
        err = await fourth.recv(MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.TOO_MANY_CONNECTIONS)
        await fourth.closed
        other = await connect(self, node, "127.0.0.2")
        self.assertGreater(await register(other, "other"), 0)
        clients[0].transport.loseConnection()
        await clients[0].closed
        await deferLater(0.1)
        again = await connect(self, node)
        self.assertGreater(await register(again, "again"), 0)

    async def test_registrations_per_address_are_limited(self):
        node = await start_node(self, None, "--max-registrations", "3")
        c = await connect(self, node)
        for i in range(3):
            await register(c, f"user{i}")
        ack = await c.request({"msgid": MsgId.REG, "name": "user3", "password": "pw"},
                              MsgId.REG_ACK)
        self.assertEqual((ack["errno"], ack["id"]), (Errno.REGISTRATION_RATE, 0))
        self.assertGreater(ack["retry_after"], 0)
        other = await connect(self, node, "127.0.0.2")
        self.assertGreater(await register(other, "user4"), 0)


class ClusterThrottleTests(TestCase):
    timeout = 120

    async def test_two_nodes_share_the_failed_login_count_through_redis(self):
        redis = start_redis()
        self.addCleanup(redis.destroy)
        db = mysql_database()
        nodes = [await start_node(self, db, "--redis", redis.url, "--node-id", str(i))
                 for i in (1, 2)]
        while not all(node.node.router.bus.up for node in nodes):
            await deferLater(0.05)
        owner = await connect(self, nodes[0])
        owner_id = await register(owner, "owner")
        refused = []
        for i in range(6):
            guesser = await connect(self, nodes[i % 2])
            refused.append((await login(guesser, owner_id, "guess"))["errno"])
            guesser.transport.loseConnection()
        self.assertEqual(refused, [1] * 5 + [142])
        for node in nodes:
            c = await connect(self, node)
            self.assertEqual((await login(c, owner_id))["errno"], Errno.THROTTLED)


class ProxyProtocolTests(TestCase):
    timeout = 60

    async def test_per_address_limits_see_client_addresses_through_nginx(self):
        node = await start_process(self, "--max-conns-per-address", "1",
                                   listen="haproxy:tcp:{port}:interface=127.0.0.1")
        nginx = start_nginx([node.port], proxy_protocol=True)
        self.addCleanup(nginx.destroy)
        first = await connect(self, nginx, "127.0.0.2")
        second = await connect(self, nginx, "127.0.0.3")
        for n, client in enumerate((first, second)):
            self.assertGreater(await register(client, f"user{n}"), 0)
        third = await connect(self, nginx, "127.0.0.2")
        self.assertEqual((await third.recv(MsgId.ERROR))["errno"], Errno.TOO_MANY_CONNECTIONS)
        self.assertIn("refusing a connection from 127.0.0.2",
                      await node.logged("refusing a connection from 127.0.0.2"))


class QuotaTests(TestCase):

    async def test_offline_quota_refuses_beyond_it_and_keeps_what_was_stored(self):
        node = await start_node(self, None, "--offline-quota", "3")
        away = await connect(self, node)
        away_id = await register(away, "away")
        sender = await user(self, node, "sender")
        old = await user(self, node, "old", proto=None)
        for i in range(3):
            ack = await sender.request({"msgid": MsgId.ONE_CHAT, "to": away_id, "msg": f"m{i}",
                                        "cid": f"c{i}"}, MsgId.SEND_ACK, cid=f"c{i}")
            self.assertEqual(ack["errno"], 0)
        ack = await sender.request({"msgid": MsgId.ONE_CHAT, "to": away_id, "msg": "m3",
                                    "cid": "c3"}, MsgId.SEND_ACK, cid="c3")
        self.assertEqual(ack["errno"], Errno.OFFLINE_QUOTA)
        old.send({"msgid": MsgId.ONE_CHAT, "to": away_id, "msg": "m4"})
        self.assertEqual((await old.recv(MsgId.ERROR))["errno"], Errno.OFFLINE_QUOTA)
        offline = (await login(away, away_id))["offlinemsg"]
        self.assertEqual([m["msg"] for m in offline], ["m0", "m1", "m2"])

    async def test_friends_groups_created_and_members_are_limited(self):
        node = await start_node(self, None, "--max-friends", "1", "--max-groups-created", "1",
                                "--max-group-members", "2")
        a, b, c = [await user(self, node, name) for name in ("a", "b", "c")]
        ack = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                              MsgId.ADD_FRIEND_ACK)
        self.assertEqual(ack["errno"], 0)
        for asker, friend in ((a, c.user_id), (c, b.user_id)):
            ack = await asker.request({"msgid": MsgId.ADD_FRIEND, "friendid": friend},
                                      MsgId.ADD_FRIEND_ACK)
            self.assertEqual(ack["errno"], Errno.TOO_MANY_FRIENDS)
        created = await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g1"},
                                  MsgId.CREATE_GROUP_ACK)
        self.assertEqual(created["errno"], 0)
        ack = await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g2"},
                              MsgId.CREATE_GROUP_ACK)
        self.assertEqual((ack["errno"], ack["groupid"]), (Errno.TOO_MANY_GROUPS, 0))
        group = {"msgid": MsgId.ADD_GROUP, "groupid": created["groupid"]}
        self.assertEqual((await b.request(group, MsgId.ADD_GROUP_ACK))["errno"], 0)
        self.assertEqual((await c.request(group, MsgId.ADD_GROUP_ACK))["errno"], Errno.GROUP_FULL)
        self.assertEqual((await b.request(group, MsgId.ADD_GROUP_ACK))["errno"], 0)


def certificate(directory: str, name: str = "localhost") -> tuple[str, str]:
    """A self-signed certificate for `name` made now: (key file, certificate file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class TlsTests(TestCase):
    timeout = 60

    async def tls_node(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        key, cert = certificate(directory)
        node = await start_process(
            self, listen=f"ssl:{{port}}:interface=127.0.0.1:privateKey={key}:certKey={cert}")
        return node, cert

    async def test_the_client_talks_tls_to_a_server_it_trusts(self):
        node, cert = await self.tls_node()
        client = start_client(self, node, "alice", "--host", "localhost", "--tls", "--ca", cert)
        self.assertGreater(await sign_up(client, "alice"), 0)

    async def test_the_client_refuses_an_unknown_certificate(self):
        node, _ = await self.tls_node()
        client = start_client(self, node, "alice", "--host", "localhost", "--tls")
        await client.expect(r"info: connection lost: .*certificate verify failed.*")
        client.type("register:alice:secret")
        await client.expect(r"info: connection lost: .*certificate verify failed.*")
        self.assertEqual(client.count(r"registered: .*"), 0)
