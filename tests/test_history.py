"""The history writer on a real SQLite store: rows are gathered and written in batches, and
old ones are deleted in the background; its time is a fake clock, its database real."""

import time

from twisted.enterprise import adbapi
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from chatd.codec import encode
from chatd.delivery import history
from chatd.delivery.history import HistoryWriter
from chatd.mids import mid_floor
from chatd.store import open_store


def frame(mid: int, sender: int, to: int) -> dict:
    return {"msgid": 6, "id": sender, "to": to, "msg": f"m{mid}", "mid": mid}


class CountingClock(Clock):
    """A fake clock that counts the calls scheduled on it."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def callLater(self, delay, f, *args, **kw):
        self.scheduled += 1
        return super().callLater(delay, f, *args, **kw)


class HistoryWriterTests(TestCase):

    def setUp(self) -> None:
        self.store = open_store(f"sqlite:{self.mktemp()}.sqlite3")
        self.addCleanup(self.store.close)
        self.clock = CountingClock()
        self.clock.advance(time.time())
        self.writer = HistoryWriter(self.store, self.clock, days=90)
        self.batches: list[int] = []

        batches = self.batches

        class Counting(adbapi.Transaction):
            def executemany(self, query, rows):
                batches.append(len(rows))
                return self._cursor.executemany(query, rows)

        self.store._pool.transactionFactory = Counting

    def record(self, mids, sender: int = 1, to: int = 2) -> None:
        for mid in mids:
            f = frame(mid, sender, to)
            self.writer.record(mid, sender, f, encode(f))

    async def kept(self, user: int = 1) -> list[int]:
        return [mid for mid, _ in await self.store.sync(user, 0, 100_000)]

    async def test_rows_wait_for_the_interval_then_go_in_one_statement(self):
        self.record(range(1, 11))
        self.assertEqual(await self.kept(), [])
        self.clock.advance(history.FLUSH_SECONDS)
        await self.writer.flush()
        self.assertEqual(await self.kept(), list(range(1, 11)))
        self.assertEqual(self.batches, [10])

    async def test_a_full_batch_is_written_without_waiting_for_the_interval(self):
        self.record(range(1, history.FLUSH_ROWS + 1))
        self.clock.advance(0)
        await self.writer.flush()
        self.assertEqual(self.batches, [history.FLUSH_ROWS])

    async def test_messages_arriving_during_a_write_schedule_nothing_each(self):
        """They wait for the running write's end, which writes them next: rescheduling a
        timer for each (as the writer once did past a full batch) cost the reactor a
        callLater and a cancel a message while the database was busy."""
        self.record(range(1, history.FLUSH_ROWS + 1))
        self.clock.advance(0)  # a full batch: its write starts
        scheduled = self.clock.scheduled
        self.record(range(history.FLUSH_ROWS + 1, 3 * history.FLUSH_ROWS + 1))
        self.assertEqual(self.clock.scheduled, scheduled)
        await self.writer.flush()
        self.assertEqual(self.batches, [history.FLUSH_ROWS, 2 * history.FLUSH_ROWS])
        self.assertEqual(await self.kept(), list(range(1, 3 * history.FLUSH_ROWS + 1)))

    async def test_a_repeated_mid_is_kept_once_and_both_sides_read_it(self):
        self.record([5, 5], sender=3, to=1)
        await self.writer.flush()
        self.assertEqual(await self.kept(1), [5])
        self.assertEqual(await self.kept(3), [5])
        self.assertEqual(await self.kept(2), [])

    async def test_history_days_0_records_nothing(self):
        writer = HistoryWriter(self.store, self.clock, days=0)
        f = frame(1, 1, 2)
        writer.record(1, 1, f, encode(f))
        writer.start()
        await writer.stop()
        self.assertEqual(await self.kept(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_expiry_deletes_only_what_is_older_than_the_days_in_batches(self):
        now = self.clock.seconds()
        old = [mid_floor(now - 91 * 86400) + i for i in range(history.EXPIRE_BATCH * 2 + 5)]
        young = [mid_floor(now - 89 * 86400) + i for i in range(3)]
        self.record(old + young)
        await self.writer.flush()
        await self.writer.expire()
        self.assertEqual(await self.kept(), young)

    async def test_stop_writes_what_was_gathered(self):
        self.writer.start()
        self.record([7, 8])
        await self.writer.stop()
        self.assertEqual(await self.kept(), [7, 8])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_forget_drops_a_row_gathered_or_written(self):
        self.record([1, 2])
        self.writer.forget(2)
        await self.writer.flush()
        self.writer.forget(1)
        await self.writer.flush()
        for _ in range(50):
            if await self.kept() == []:
                return
        self.fail(f"still kept: {await self.kept()}")
