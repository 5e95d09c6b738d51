"""The store, one suite run against both dialects: SQLite in a temp file and a private MariaDB."""

import threading
import time

import pymysql
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from chatd.store import NameTaken, Unread, open_store
from chatd.store.mysql import POOL_MIN, parse_mysql_url
from chatd.store.relations import GroupChange
from tests.servers import mysql_database

HASH = "scrypt$1$8$1$c2FsdA==$aGFzaA=="
MID = 4722366482869645313  # a real-looking mid from docs/protocol.md
MAX_MID = (1 << 63) - 1


def count_statements(store) -> list[str]:
    """Record every statement the store executes from now on (adbapi's transactionFactory is
    its documented hook for wrapping the cursor)."""
    seen: list[str] = []

    class Counting(adbapi.Transaction):
        def execute(self, query, *args, **kwargs):
            seen.append(query)
            return self._cursor.execute(query, *args, **kwargs)

    store._pool.transactionFactory = Counting
    return seen


class StoreTests:
    """Mixed into a TestCase with `url()`, a fresh empty database per test."""

    def url(self) -> str:
        raise NotImplementedError

    def open(self, url: str | None = None):
        store = open_store(url or self.database_url)
        self.addCleanup(store.close)
        return store

    def setUp(self) -> None:
        self.database_url = self.url()
        self.store = self.open()

    async def users(self, *names: str) -> list[int]:
        return [await self.store.create_user(name, HASH) for name in names]

    # users

    async def test_create_user_returns_increasing_ids_and_user_reads_them_back(self):
        alice, bob = await self.users("alice", "bob")
        self.assertGreater(bob, alice)
        record = await self.store.user(alice)
        self.assertEqual((record.id, record.name, record.password), (alice, "alice", HASH))

    async def test_create_user_refuses_a_taken_name(self):
        await self.users("alice")
        with self.assertRaises(NameTaken):
            await self.store.create_user("alice", HASH)

    async def test_names_are_case_sensitive(self):
        lower, upper = await self.users("alice", "Alice")
        self.assertNotEqual(lower, upper)
        self.assertEqual((await self.store.user(upper)).name, "Alice")

    async def test_names_keep_any_unicode_including_emoji(self):
        names = ["😀", "😀😀", "中文名字", "é" * 50, "🎉" * 50]
        ids = await self.users(*names)
        self.assertEqual([(await self.store.user(i)).name for i in ids], names)
        with self.assertRaises(NameTaken):
            await self.store.create_user("😀", HASH)

    async def test_user_is_none_for_an_unknown_id(self):
        (alice,) = await self.users("alice")
        self.assertIsNone(await self.store.user(alice + 1))
        self.assertIsNone(await self.store.user(MAX_MID))

    # friends

    async def test_add_friend_is_mutual(self):
        alice, bob = await self.users("alice", "bob")
        await self.store.add_friend(alice, bob)
        self.assertEqual(await self.store.friends(alice), [(bob, "bob")])
        self.assertEqual(await self.store.friends(bob), [(alice, "alice")])

    async def test_add_friend_twice_changes_nothing(self):
        alice, bob = await self.users("alice", "bob")
        await self.store.add_friend(alice, bob)
        await self.store.add_friend(alice, bob)
        await self.store.add_friend(bob, alice)
        self.assertEqual(await self.store.friends(alice), [(bob, "bob")])
        self.assertEqual(await self.store.friends(bob), [(alice, "alice")])

    async def test_friends_are_ordered_by_id(self):
        me, *others = await self.users("me", "a", "b", "c", "d")
        for friend in reversed(others):
            await self.store.add_friend(me, friend)
        self.assertEqual(await self.store.friends(me),
                         list(zip(others, ["a", "b", "c", "d"], strict=True)))

    async def test_a_user_without_friends_has_an_empty_list(self):
        (alice,) = await self.users("alice")
        self.assertEqual(await self.store.friends(alice), [])

    # groups

    async def test_create_group_makes_the_creator_its_first_member(self):
        (alice,) = await self.users("alice")
        gid = await self.store.create_group("team", "the team", alice)
        self.assertEqual(await self.store.member_ids(gid), {alice})
        (group,) = await self.store.user_groups(alice)
        self.assertEqual((group.id, group.name, group.desc), (gid, "team", "the team"))
        self.assertEqual([(m.id, m.name, m.role) for m in group.members],
                         [(alice, "alice", "creator")])

    async def test_create_group_refuses_a_taken_name(self):
        alice, bob = await self.users("alice", "bob")
        first = await self.store.create_group("team", "", alice)
        with self.assertRaises(NameTaken):
            await self.store.create_group("team", "other", bob)
        self.assertEqual(await self.store.member_ids(first), {alice})
        self.assertEqual(await self.store.user_groups(bob), [])

    async def test_group_names_are_case_sensitive_and_unicode(self):
        (alice,) = await self.users("alice")
        ids = [await self.store.create_group(n, "", alice) for n in ("team", "Team", "🚀")]
        self.assertEqual(len(set(ids)), 3)
        groups = await self.store.user_groups(alice)
        self.assertEqual([g.name for g in groups], ["team", "Team", "🚀"])

    async def test_join_group_is_none_for_an_unknown_group(self):
        (alice,) = await self.users("alice")
        self.assertIsNone(await self.store.join_group(12345, alice))
        self.assertEqual(await self.store.user_groups(alice), [])

    async def test_join_group_returns_every_member_with_its_role(self):
        alice, bob, carol = await self.users("alice", "bob", "carol")
        gid = await self.store.create_group("team", "desc", alice)
        await self.store.join_group(gid, bob)
        group = await self.store.join_group(gid, carol)
        self.assertEqual((group.id, group.name, group.desc), (gid, "team", "desc"))
        self.assertEqual([(m.id, m.name, m.role) for m in group.members],
                         [(alice, "alice", "creator"), (bob, "bob", "normal"),
                          (carol, "carol", "normal")])

    async def test_join_group_twice_is_harmless(self):
        alice, bob = await self.users("alice", "bob")
        gid = await self.store.create_group("team", "", alice)
        await self.store.join_group(gid, bob)
        again = await self.store.join_group(gid, bob)
        self.assertEqual([(m.id, m.role) for m in again.members],
                         [(alice, "creator"), (bob, "normal")])
        creator_again = await self.store.join_group(gid, alice)
        self.assertEqual([(m.id, m.role) for m in creator_again.members],
                         [(alice, "creator"), (bob, "normal")])

    async def test_user_groups_returns_every_group_with_every_member(self):
        me, bob, carol = await self.users("me", "bob", "carol")
        gids = [await self.store.create_group(f"g{i}", f"d{i}", me) for i in range(20)]
        for gid in gids[::2]:
            await self.store.join_group(gid, bob)
        await self.store.join_group(gids[5], carol)
        lonely = await self.store.create_group("not mine", "", carol)
        groups = await self.store.user_groups(me)
        self.assertEqual([(g.id, g.name, g.desc) for g in groups],
                         [(gid, f"g{i}", f"d{i}") for i, gid in enumerate(gids)])
        for i, group in enumerate(groups):
            expected = [(me, "me", "creator")]
            if i % 2 == 0:
                expected.append((bob, "bob", "normal"))
            if i == 5:
                expected.append((carol, "carol", "normal"))
            self.assertEqual([(m.id, m.name, m.role) for m in group.members], expected)
        self.assertEqual([g.id for g in await self.store.user_groups(carol)], [gids[5], lonely])

    async def test_user_groups_is_one_statement_whatever_the_number_of_groups(self):
        me, bob = await self.users("me", "bob")
        for i in range(20):
            gid = await self.store.create_group(f"g{i}", "", me)
            await self.store.join_group(gid, bob)
        statements = count_statements(self.store)
        groups = await self.store.user_groups(me)
        self.assertEqual(len(groups), 20)
        self.assertEqual(len(statements), 1, statements)

    async def test_member_ids(self):
        alice, bob, carol = await self.users("alice", "bob", "carol")
        gid = await self.store.create_group("team", "", alice)
        await self.store.join_group(gid, bob)
        await self.store.create_group("other", "", carol)
        self.assertEqual(await self.store.member_ids(gid), {alice, bob})
        self.assertEqual(await self.store.member_ids(gid + 100), set())

    # offline messages

    async def test_save_offline_stores_nothing_for_an_unknown_user(self):
        (alice,) = await self.users("alice")
        self.assertEqual(await self.store.save_offline([(alice + 1, 1, "{}")]), 0)
        self.assertEqual((await self.store.welcome(alice + 1, 10)).offline, [])

    async def test_save_offline_counts_only_rows_of_existing_users(self):
        (alice,) = await self.users("alice")
        rows = [(alice, 1, "a"), (alice + 1, 2, "b"), (alice, 3, "c")]
        self.assertEqual(await self.store.save_offline(rows), 2)
        self.assertEqual((await self.store.welcome(alice, 10)).offline, [(1, "a"), (3, "c")])

    async def test_save_offline_stores_a_user_and_mid_once(self):
        alice, bob = await self.users("alice", "bob")
        self.assertEqual(await self.store.save_offline([(alice, MID, "first")]), 1)
        self.assertEqual(await self.store.save_offline([(alice, MID, "again")]), 0)
        self.assertEqual(await self.store.save_offline([(alice, 7, "x"), (alice, 7, "x")]), 1)
        self.assertEqual(await self.store.save_offline([(bob, MID, "for bob")]), 1)
        self.assertEqual((await self.store.welcome(alice, 10)).offline, [(7, "x"), (MID, "first")])
        self.assertEqual((await self.store.welcome(bob, 10)).offline, [(MID, "for bob")])

    async def test_offline_is_oldest_first_by_mid_with_a_limit(self):
        (alice,) = await self.users("alice")
        mids = [MID + 30, MAX_MID, 5, MID, MID + 1]
        await self.store.save_offline([(alice, m, f"m{m}") for m in mids])
        ordered = sorted(mids)
        frames = [(m, f"m{m}") for m in ordered]
        self.assertEqual((await self.store.welcome(alice, 100)).offline, frames)
        self.assertEqual((await self.store.welcome(alice, 2)).offline, frames[:2])

    async def test_offline_frames_keep_unicode(self):
        (alice,) = await self.users("alice")
        frame = '{"msgid":6,"msg":"héllo 😀 中文"}'
        await self.store.save_offline([(alice, 1, frame)])
        self.assertEqual((await self.store.welcome(alice, 1)).offline, [(1, frame)])

    async def test_offline_frames_keep_the_largest_message(self):
        (alice,) = await self.users("alice")
        frame = '{"msgid":6,"msg":"' + "😀" * 32768 + '"}'
        await self.store.save_offline([(alice, 1, frame)])
        self.assertEqual((await self.store.welcome(alice, 1)).offline, [(1, frame)])

    async def test_delete_offline_deletes_only_the_named_mids_of_that_user(self):
        alice, bob = await self.users("alice", "bob")
        await self.store.save_offline([(alice, m, "a") for m in (1, 2, 3, 4)]
                                      + [(bob, m, "b") for m in (1, 2, 3, 4)])
        await self.store.delete_offline(alice, [2, 4, 99])
        self.assertEqual([m for m, _ in (await self.store.welcome(alice, 10)).offline], [1, 3])
        self.assertEqual([m for m, _ in (await self.store.welcome(bob, 10)).offline], [1, 2, 3, 4])
        await self.store.delete_offline(alice, [])
        self.assertEqual([m for m, _ in (await self.store.welcome(alice, 10)).offline], [1, 3])

    # schema

    async def test_welcome_gives_friends_groups_and_offline_frames_together(self):
        alice, bob = await self.users("alice", "bob")
        await self.store.add_friend(alice, bob)
        gid = await self.store.create_group("g", "d", bob)
        await self.store.join_group(gid, alice)
        await self.store.save_offline([(alice, 5, "later"), (alice, 4, "sooner")])
        welcome = await self.store.welcome(alice, 10)
        self.assertEqual(welcome.friends, [(bob, "bob")])
        self.assertEqual([(g.id, {m.id for m in g.members}) for g in welcome.groups],
                         [(gid, {bob, alice})])
        self.assertEqual(welcome.offline, [(4, "sooner"), (5, "later")])

    async def test_lookups_and_welcomes_of_one_moment_share_interactions_each_its_answer(self):
        alice, bob = await self.users("alice", "bob")
        await self.store.add_friend(alice, bob)
        await self.store.save_offline([(bob, 7, "for bob")])
        await self.store.ban(bob, "spam")
        before = self.store.stats.store_calls.get("user")
        calls = sum(before.counts) if before else 0
        records = await gatherResults([Deferred.fromCoroutine(self.store.user(u))
                                       for u in (alice, bob + 100, bob, alice)])
        self.assertEqual([r and (r.id, r.name, r.banned) for r in records],
                         [(alice, "alice", False), None, (bob, "bob", True),
                          (alice, "alice", False)])
        self.assertEqual(sum(self.store.stats.store_calls["user"].counts), calls + 1,
                         "four lookups in one reactor turn, one interaction")
        welcomes = await gatherResults([Deferred.fromCoroutine(self.store.welcome(u, 10))
                                        for u in (alice, bob)])
        self.assertEqual([(w.friends, w.offline) for w in welcomes],
                         [([(bob, "bob")], []), ([(alice, "alice")], [(7, "for bob")])])

    async def test_welcomes_of_one_moment_are_one_interaction_and_each_the_lone_answer(self):
        alice, bob, carol, dave = await self.users("alice", "bob", "carol", "dave")
        await self.store.add_friend(alice, bob)
        await self.store.add_friend(alice, carol)
        gid = await self.store.create_group("team", "", alice, joined=0)
        await self.store.join_group(gid, bob, joined=0)
        await self.store.save_offline([(bob, 7, "for bob"), (bob, 8, "again"), (carol, 9, "c")])
        await self.store.set_block(carol, bob, True)
        now = int(time.time() * 1000)
        await self.store.request_friend(dave, carol, now, 0, 10)
        await self.store.save_history([(10, alice, bob, alice, b"a1"),
                                       (11, 0, gid, bob, b"g1")])
        asked = [(alice, 10, True), (bob, 1, True), (carol, 10, False), (dave, 10, True),
                 (bob, 10, False)]
        alone = [await self.store.welcome(*a) for a in asked]
        calls = sum(self.store.stats.store_calls["welcome"].counts)
        together = await gatherResults([Deferred.fromCoroutine(self.store.welcome(*a))
                                        for a in asked])
        self.assertEqual(sum(self.store.stats.store_calls["welcome"].counts), calls + 1)
        self.assertEqual(together, alone)
        self.assertEqual([(w.friends, w.offline, w.blocked_by) for w in together[1:3]],
                         [([(alice, "alice")], [(7, "for bob")], {carol}),
                          ([(alice, "alice")], [(9, "c")], set())])
        self.assertEqual([[m.id for m in g.members] for g in together[1].groups], [[alice, bob]])
        self.assertEqual([r.id for r in together[2].requests], [dave])
        self.assertEqual([w.unread for w in together[:2]],
                         [[Unread(0, gid, 1, 11)], [Unread(alice, 0, 1, 10)]])

    async def test_revoking_tokens_is_read_back_with_the_user_and_never_moves_back(self):
        alice, bob = await self.users("alice", "bob")
        self.assertEqual((await self.store.user(alice)).tokens_revoked, 0)
        await self.store.revoke_tokens(alice, 5000)
        await self.store.revoke_tokens(alice, 4000)
        self.assertEqual((await self.store.user(alice)).tokens_revoked, 5000)
        await self.store.revoke_tokens(alice, 6000)
        self.assertEqual((await self.store.user(alice)).tokens_revoked, 6000)
        self.assertEqual((await self.store.user(bob)).tokens_revoked, 0)
        await self.store.revoke_tokens(bob + 100, 1000)
        self.assertIsNone(await self.store.user(bob + 100))

    # operators

    async def test_a_ban_is_read_back_with_the_user_replaced_and_lifted(self):
        alice, bob = await self.users("alice", "bob")
        self.assertTrue(await self.store.ban(alice, "spam"))
        self.assertTrue(await self.store.ban(alice, "more spam"))
        self.assertFalse(await self.store.ban(bob + 100, "nobody"))
        self.assertTrue((await self.store.user(alice)).banned)
        self.assertFalse((await self.store.user(bob)).banned)
        self.assertEqual((await self.store.details(alice)).ban[0], "more spam")
        await self.store.unban(alice)
        self.assertFalse((await self.store.user(alice)).banned)
        self.assertIsNone((await self.store.details(alice)).ban)

    async def test_set_password_replaces_the_hash_of_an_existing_user_only(self):
        alice, = await self.users("alice")
        self.assertTrue(await self.store.set_password(alice, "new-hash"))
        self.assertEqual((await self.store.user(alice)).password, "new-hash")
        self.assertFalse(await self.store.set_password(alice + 100, "x"))

    async def test_details_show_friends_groups_and_the_offline_backlog(self):
        alice, bob = await self.users("alice", "bob")
        await self.store.add_friend(alice, bob)
        gid = await self.store.create_group("g", "d", alice)
        await self.store.save_offline([(alice, 1, "a"), (alice, 2, "b"), (bob, 3, "c")])
        details = await self.store.details(alice)
        self.assertEqual((details.name, details.friends, details.groups, details.offline),
                         ("alice", [(bob, "bob")], [(gid, "g")], 2))
        self.assertIsNone(await self.store.details(bob + 100))

    async def test_a_secret_is_created_once_and_shared_by_every_store_of_the_database(self):
        first = await self.store.secret("token")
        self.assertEqual(len(first), 32)
        self.assertEqual(await self.store.secret("token"), first)
        self.assertEqual(await self.open().secret("token"), first)
        self.assertNotEqual(await self.store.secret("other"), first)

    async def test_open_store_twice_on_one_database_keeps_its_data(self):
        alice, bob = await self.users("alice", "bob")
        await self.store.add_friend(alice, bob)
        await self.store.save_offline([(bob, 1, "x")])
        again = self.open()
        self.assertEqual(await again.friends(alice), [(bob, "bob")])
        self.assertEqual((await again.welcome(bob, 10)).offline, [(1, "x")])
        carol = await again.create_user("carol", HASH)
        self.assertGreater(carol, bob)
        with self.assertRaises(NameTaken):
            await again.create_user("alice", HASH)


    # relations and history

    async def test_the_longest_standing_member_succeeds_the_creator(self):
        alice, bob, carol = await self.users("alice", "bob", "carol")
        gid = await self.store.create_group("team", "", alice, joined=10)
        await self.store.join_group(gid, carol, joined=20)
        await self.store.join_group(gid, bob, joined=30)
        self.assertEqual(await self.store.leave_group(gid, alice), GroupChange.DONE)
        (group,) = await self.store.user_groups(bob)
        self.assertEqual([(m.id, m.role) for m in group.members],
                         [(bob, "normal"), (carol, "creator")])
        self.assertEqual(await self.store.leave_group(gid, alice), GroupChange.NOT_MEMBER)
        self.assertEqual(await self.store.kick_member(gid, bob, carol), GroupChange.NOT_CREATOR)
        self.assertEqual(await self.store.kick_member(gid, carol, bob), GroupChange.DONE)
        self.assertEqual(await self.store.member_ids(gid), {carol})

    async def test_members_leaving_together_delete_the_group(self):
        names = [f"u{i}" for i in range(6)]
        ids = await self.users(*names)
        gid = await self.store.create_group("team", "", ids[0])
        for uid in ids[1:]:
            await self.store.join_group(gid, uid)
        results = await gatherResults([Deferred.fromCoroutine(self.store.leave_group(gid, u))
                                       for u in ids])
        self.assertEqual(set(results), {GroupChange.DONE})
        self.assertEqual(await self.store.member_ids(gid), set())
        self.assertEqual(await self.store.leave_group(gid, ids[0]), GroupChange.NO_GROUP)
        self.assertGreater(await self.store.create_group("team", "", ids[0]), gid)

    async def test_unread_counts_follow_the_read_marker(self):
        alice, bob = await self.users("alice", "bob")
        gid = await self.store.create_group("team", "", alice, joined=0)
        await self.store.join_group(gid, bob, joined=15)
        await self.store.save_history([(10, alice, bob, alice, b"a1"),
                                       (11, alice, bob, bob, b"b1"),
                                       (12, alice, bob, alice, b"a2"),
                                       (14, 0, gid, alice, b"before bob joined"),
                                       (16, 0, gid, alice, b"g1")])
        unread = (await self.store.welcome(bob, 10, unread=True)).unread
        self.assertEqual(sorted(unread, key=lambda u: u.group_id),
                         [Unread(alice, 0, 2, 12), Unread(0, gid, 1, 16)])
        self.assertTrue(await self.store.mark_read(bob, 0, alice, 10))
        self.assertTrue(await self.store.mark_read(bob, gid, 0, 16))
        self.assertEqual((await self.store.welcome(bob, 10, unread=True)).unread,
                         [Unread(alice, 0, 1, 12)])
        self.assertFalse(await self.store.mark_read(bob, gid + 1, 0, 16))
        self.assertEqual((await self.store.welcome(alice, 10, unread=True)).unread,
                         [Unread(bob, 0, 1, 11)])

    async def test_a_group_whose_id_is_a_user_id_stays_out_of_that_users_sync(self):
        alice, bob = await self.users("alice", "bob")
        gid = await self.store.create_group("team", "", alice)
        self.assertEqual(gid, alice)
        await self.store.save_history([(1, 0, gid, alice, b"to the group"),
                                       (2, alice, bob, alice, "to bob 😀 '\\".encode())])
        self.assertEqual(await self.store.pair_history(alice, bob, 3, 10),
                         [(2, "to bob 😀 '\\")])
        self.assertEqual([m for m, _ in await self.store.sync(bob, 0, 10)], [2])
        self.assertEqual([m for m, _ in await self.store.sync(alice, 0, 10)], [1, 2])
        self.assertEqual(await self.store.pair_history(bob, bob, 1 << 62, 10), [])
        self.assertEqual((await self.store.welcome(bob, 10, unread=True)).unread,
                         [Unread(alice, 0, 1, 2)])

    async def test_expiry_goes_in_batches_and_keeps_younger_messages(self):
        alice, bob = await self.users("alice", "bob")
        await self.store.save_history([(m, alice, bob, alice, b"x") for m in range(1, 8)])
        self.assertEqual(await self.store.expire_history(6, 2), 2)
        self.assertEqual(await self.store.expire_history(6, 2), 2)
        self.assertEqual(await self.store.expire_history(6, 2), 1)
        self.assertEqual(await self.store.expire_history(6, 2), 0)
        self.assertEqual([m for m, _ in await self.store.sync(alice, 0, 10)], [6, 7])


class SQLiteStoreTests(StoreTests, TestCase):
    """The embedded default: a SQLite file in the test's temp dir."""

    def url(self) -> str:
        return f"sqlite:{self.mktemp()}.sqlite3"


class MySQLStoreTests(StoreTests, TestCase):
    """A private MariaDB; the database's default charset is latin1, so the tables must declare
    utf8mb4 themselves."""

    def url(self) -> str:
        url = mysql_database()
        self.server_args = parse_mysql_url(url)
        self.database = self.server_args.pop("database")
        with self.admin() as c:
            c.execute(f"ALTER DATABASE {self.database} CHARACTER SET latin1 COLLATE latin1_bin")
        return url

    def admin(self):
        """A cursor on a connection of our own, outside the test database."""
        conn = pymysql.connect(**self.server_args, autocommit=True)
        self.addCleanup(conn.close)
        return conn.cursor()

    def test_tables_and_text_columns_are_utf8mb4(self):
        with self.admin() as c:
            c.execute("SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES"
                      " WHERE TABLE_SCHEMA = %s", (self.database,))
            tables = dict(c.fetchall())
            c.execute("SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME"
                      " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
                      " AND CHARACTER_SET_NAME IS NOT NULL", (self.database,))
            columns = c.fetchall()
        self.assertEqual(set(tables), {"User", "Friend", "AllGroup", "GroupUser",
                                       "OfflineMessage", "ServerSecret", "TokenRevocation",
                                       "SchemaVersion", "History", "ReadMarker", "Block", "Ban",
                                       "UserSetting", "FriendRequest", "GroupInvite",
                                       "PushSubscription", "Mute", "Media",
                                       "Reaction", "Hidden", "Recalled"})
        for table, collation in tables.items():
            self.assertTrue(collation.startswith("utf8mb4_"), (table, collation))
        self.assertIn(("User", "name", "utf8mb4"), columns)
        for table, column, charset in columns:
            self.assertEqual(charset, "utf8mb4", (table, column))

    async def kill_every_connection(self) -> None:
        """Use the pool as a busy node does, with several connections; then kill all of them
        from outside, as a database restart does."""
        barrier = threading.Barrier(POOL_MIN)
        await gatherResults([self.store._pool.runInteraction(lambda _: barrier.wait(10))
                             for _ in range(POOL_MIN)])
        with self.admin() as c:
            c.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s",
                      (self.database,))
            ids = [row[0] for row in c.fetchall()]
            self.assertGreaterEqual(len(ids), POOL_MIN)
            for thread_id in ids:
                c.execute(f"KILL {int(thread_id)}")

    async def test_a_lost_connection_is_retried_once_for_idempotent_work(self):
        (alice,) = await self.users("alice")
        await self.kill_every_connection()
        self.assertEqual((await self.store.user(alice)).name, "alice")
        self.assertEqual(await self.store.friends(alice), [])
        # adbapi logs the failed rollback of the dead connection: that is the first attempt.
        self.assertTrue(self.flushLoggedErrors(pymysql.err.Error, adbapi.ConnectionLost))

    async def test_create_user_survives_lost_connections(self):
        await self.users("alice")
        await self.kill_every_connection()
        bob = await self.store.create_user("bob", HASH)
        self.assertEqual((await self.store.user(bob)).name, "bob")
        with self.assertRaises(NameTaken):
            await self.store.create_user("bob", HASH)
        self.flushLoggedErrors(pymysql.err.Error, adbapi.ConnectionLost)  # adbapi's rollbacks

    async def test_create_group_survives_lost_connections(self):
        (alice,) = await self.users("alice")
        await self.kill_every_connection()
        gid = await self.store.create_group("team", "", alice)
        self.assertEqual(await self.store.member_ids(gid), {alice})
        self.assertEqual([g.id for g in await self.store.user_groups(alice)], [gid])
        self.flushLoggedErrors(pymysql.err.Error, adbapi.ConnectionLost)  # adbapi's rollbacks
