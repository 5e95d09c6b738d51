"""One benchmark run as the parent drives it: the phases in order over the worker pool, and
the report they add up to."""

from __future__ import annotations

import os
import signal
import sys
import time
from argparse import Namespace
from collections import Counter
from time import monotonic_ns
from typing import Any

from twisted.internet.task import deferLater

from chatd.bench.plan import (
    allocate,
    pick_members,
    target_of,
    user_name,
    worker_ranges,
)
from chatd.bench.pool import GroupHub, WorkerPool
from chatd.bench.stats import PhaseResult, merge_results

ORDER = ("reg", "login", "chat", "group", "history", "idle", "resume")
KILL_WAIT = 10.0  # seconds a node killed by --resume-kill has to exit


def effective_phases(requested: list[str], have_ids: bool) -> list[str]:
    """The phases that must run for those requested: chat, group and idle need logged-in
    users, and logging in needs ids, from registration when --idfile has none."""
    wanted = set(requested)
    if wanted & {"chat", "group", "history", "idle", "resume"}:
        wanted.add("login")
    if "login" in wanted and not have_ids:
        wanted.add("reg")
    return [p for p in ORDER if p in wanted]


def load_ids(path: str | None, users: int) -> list[int]:
    """User ids from an --idfile (one per line, line i for user i, as chatload writes it);
    0 where there is none."""
    ids = [0] * users
    if path and os.path.exists(path):
        with open(path, encoding="ascii") as f:
            for i, line in zip(range(users), f, strict=False):
                ids[i] = int(line.strip() or 0)
    return ids


def save_ids(path: str, ids: list[int]) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.writelines(f"{uid}\n" for uid in ids)


def rss_kib(pids: list[int]) -> int | None:
    """The summed VmRSS of the server processes, or None when one cannot be read."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError):
            print(f"chatd-bench: cannot read the RSS of pid {pid}", file=sys.stderr)
            return None
    return total


def _running(pid: int) -> bool:
    """Whether any thread of the process is left. A killed process's files (its sockets)
    close with its last thread, which may be well after its main thread is a zombie."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] not in "ZX":
                    return True
        except OSError:
            continue
    return False


class Bench:
    """The parent's plan and results for one run."""

    def __init__(self, opts: Namespace, reactor: Any) -> None:
        self.opts = opts
        self.ranges = worker_ranges(opts.users, opts.processes)
        self.reactor = reactor
        self.pool = WorkerPool(reactor, len(self.ranges))
        self.deadline = monotonic_ns() + int(opts.max_time * 1e9)
        self.ids = load_ids(opts.idfile, opts.users)
        self.phases = effective_phases(opts.phases, all(self.ids))
        self.window = max(1, opts.window // len(self.ranges))
        self.results: dict[str, dict[str, Any]] = {}
        self.online: dict[int, list[int]] = {}
        self.rss: dict[str, Any] = {}
        self.params: dict[str, Any] = {
            "targets": opts.target, "users": opts.users, "processes": len(self.ranges),
            "proto": opts.proto, "ws": opts.ws, "phases": self.phases, "messages": opts.messages,
            "pairs": 0, "group_size": 0, "group_messages": opts.group_messages,
            "idle": 0, "idle_seconds": opts.idle_seconds, "timeout": opts.timeout,
            "max_time": opts.max_time, "window": opts.window, "run_id": opts.run_id,
            "devices": opts.devices, "ack_delay": opts.ack_delay}
        self.max_time_reached = False

    async def run(self) -> dict[str, Any]:
        self.sample_rss("before_kib")
        self.pool.spawn()
        try:
            await self.pool.run({w: self.setup(w) for w in range(len(self.ranges))})
            await self.connect()
            for name in self.phases:
                if monotonic_ns() >= self.deadline:
                    self.max_time_reached = True
                    break
                await getattr(self, f"phase_{name}")()
        finally:
            await self.pool.close()
        self.max_time_reached |= monotonic_ns() >= self.deadline
        return self.report()

    def setup(self, wid: int) -> dict[str, Any]:
        opts = self.opts
        users = [[i, user_name(opts.prefix, opts.run_id, i), self.ids[i]]
                 for i in self.ranges[wid]]
        return {"cmd": "setup", "users": users, "targets": opts.addresses, "proto": opts.proto,
                "ws": opts.ws, "password": opts.password, "timeout": opts.timeout,
                "devices": opts.devices, "ack_delay": opts.ack_delay}

    def worker_of(self, user: int) -> int:
        return next(w for w, r in enumerate(self.ranges) if user in r)

    def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        return {"cmd": cmd, "deadline": self.deadline, **args}

    def record(self, result: PhaseResult) -> None:
        self.results[result.name] = result.summary()

    async def simple_phase(self, name: str, unit: str, **args: Any) -> dict[int, Any]:
        """A phase every worker runs on all its users; its merged result is recorded."""
        cmds = {w: self.command(name, **args) for w in range(len(self.ranges))}
        answers = await self.pool.run_phase(name, cmds, self.opts.users, unit)
        self.record(merge_results(name, unit, [a["result"] for a in answers.values()]))
        return answers

    async def connect(self) -> None:
        await self.simple_phase("connect", "conns/s", window=self.window)

    async def phase_reg(self) -> None:
        answers = await self.simple_phase("reg", "ops/s", window=self.window)
        for answer in answers.values():
            for index, uid in answer["data"]["ids"].items():
                self.ids[int(index)] = uid
        if self.opts.idfile:
            save_ids(self.opts.idfile, self.ids)

    async def phase_login(self) -> None:
        answers = await self.simple_phase("login", "ops/s", window=self.window)
        self.online = {w: a["data"]["online"] for w, a in answers.items()}
        self.sample_rss("after_login_kib")

    async def phase_chat(self) -> None:
        opts = self.opts
        workers = range(len(self.ranges))
        quota = allocate(opts.pairs, [len(self.online.get(w, [])) // 2 for w in workers])
        self.params["pairs"] = sum(quota)
        cmds = {w: self.command("chat", pairs=quota[w], messages=opts.messages)
                for w in workers if quota[w]}
        answers = await self.pool.run_phase("chat", cmds, sum(quota) * opts.messages,
                                            "msgs/s")
        result = merge_results("chat", "msgs/s", [a["result"] for a in answers.values()])
        self.record(result)
        self.record_devices(answers, result.sent * 2)

    async def phase_group(self) -> None:
        online = [self.online.get(w, []) for w in range(len(self.ranges))]
        members = pick_members(online, self.opts.group_size)
        result = PhaseResult("group", "deliveries/s")
        if len(members) < 2:
            result.error("fewer than two users online for the group")
            self.record(result)
            return
        gid = await self.create_group(members[0], result)
        if gid:
            members = await self.join_group(gid, members, result)
            await self.fan_out(gid, members, result)
        self.record(result)

    async def create_group(self, creator: int, result: PhaseResult) -> int:
        name = f"bench_{self.opts.run_id or 'g'}_{os.getpid()}_{int(time.time())}"
        cmd = self.command("group_create", creator=creator, group_name=name)
        answer = (await self.pool.run({self.worker_of(creator): cmd}))[self.worker_of(creator)]
        part = PhaseResult.from_wire(answer["result"])
        result.fail, result.lost, result.first_error = part.fail, part.lost, part.first_error
        return answer["data"].get("gid", 0)

    async def join_group(self, gid: int, members: list[int], result: PhaseResult) -> list[int]:
        """The members whose join succeeded (or went unanswered in proto 1), creator first."""
        by_worker: dict[int, list[int]] = {}
        for member in members[1:]:
            by_worker.setdefault(self.worker_of(member), []).append(member)
        cmds = {w: self.command("group_join", gid=gid, members=m) for w, m in by_worker.items()}
        answers = await self.pool.run(cmds)
        joined = {members[0]}
        for answer in answers.values():
            joined.update(answer["data"]["joined"])
            part = PhaseResult.from_wire(answer["result"])
            result.fail += part.fail + part.lost
            result.first_error = result.first_error or part.first_error
            result.extra["join_unanswered"] = (result.extra.get("join_unanswered", 0)
                                               + part.extra.get("unanswered", 0))
        return [m for m in members if m in joined]

    async def fan_out(self, gid: int, members: list[int], result: PhaseResult) -> None:
        owner = {m: self.worker_of(m) for m in members}
        per_worker = Counter(owner.values())
        holders = set(per_worker)
        expected = {m: sum(1 for w, n in per_worker.items() if n - (owner[m] == w) > 0)
                    for m in members}
        hub = GroupHub(owner, expected, self.pool.send)
        gm = self.opts.group_messages
        cmds = {w: self.command("group", gid=gid, members=members, messages=gm)
                for w in holders}
        size = len(members)
        self.params["group_size"] = size
        answers = await self.pool.run_group(cmds, hub, size * gm * (size - 1))
        for answer in answers.values():
            result.merge(PhaseResult.from_wire(answer["result"]))
        result.lost = max(0, result.sent * (size - 1) - result.ok)
        result.extra.update(gid=gid, members=size)
        self.record_devices(answers, result.sent * size)

    def record_devices(self, answers: dict[int, dict[str, Any]], per_device: int) -> None:
        """The row of the users' other devices (--devices): each of them should have got
        `per_device` payloads; what they did not is lost, per device number too."""
        parts = [a["data"]["devices"] for a in answers.values() if "devices" in a["data"]]
        if self.opts.devices < 2 or not parts:
            return
        result = merge_results(parts[0]["name"], parts[0]["unit"], parts)
        result.sent = per_device * (self.opts.devices - 1)
        result.lost = max(0, result.sent - result.ok)
        for device in range(1, self.opts.devices):
            got = result.extra.get(f"device{device}_ok", 0)
            result.extra[f"device{device}_lost"] = max(0, per_device - got)
        self.record(result)

    async def phase_history(self) -> None:
        await self.simple_phase("history", "msgs/s", window=self.window)

    async def phase_idle(self) -> None:
        online = sorted(i for users in self.online.values() for i in users)
        keep = online[:self.opts.idle] if self.opts.idle is not None else online
        self.params["idle"] = len(keep)
        cmds = {w: self.command("idle", keep=[i for i in keep if i in r],
                                seconds=self.opts.idle_seconds)
                for w, r in enumerate(self.ranges)}
        answers = await self.pool.run_phase("idle", cmds, int(self.opts.idle_seconds), "s",
                                            combine=max)
        result = merge_results("idle", "held", [a["result"] for a in answers.values()])
        self.record(result)
        self.sample_rss("after_idle_kib")
        before, after = self.rss.get("before_kib"), self.rss.get("after_idle_kib")
        if before is not None and after is not None and result.ok:
            self.rss["kib_per_idle_conn"] = round((after - before) / result.ok, 2)

    async def phase_resume(self) -> None:
        """The users of the first target come back through the others with their tokens;
        with --resume-kill its node is killed first (SIGKILL), as in a crash."""
        k = len(self.opts.addresses)
        leaving = {w: [i for i in users if target_of(i, k) == 0]
                   for w, users in self.online.items()}
        self.params["resumed"] = sum(len(users) for users in leaving.values())
        if self.opts.resume_kill:
            try:
                os.kill(self.opts.resume_kill, signal.SIGKILL)
            except OSError as e:
                raise RuntimeError(f"--resume-kill {self.opts.resume_kill}: {e}") from None
            self.params["kill_wait_ms"] = await self.gone(self.opts.resume_kill)
        cmds = {w: self.command("resume", users=users, window=self.window)
                for w, users in leaving.items() if users}
        answers = await self.pool.run_phase("resume", cmds, self.params["resumed"], "ops/s")
        self.record(merge_results("resume", "ops/s", [a["result"] for a in answers.values()]))

    async def gone(self, pid: int) -> int:
        """Wait (up to KILL_WAIT) until the killed node has exited, and so closed its
        connections: to Redis, and to its users, whose clients notice only then in a real
        crash. Starting at once raced the kill itself: a token login could reach another node
        while Redis still counted the dying one. Returns the milliseconds waited."""
        started = time.monotonic()
        while _running(pid) and time.monotonic() - started < KILL_WAIT:
            await deferLater(self.reactor, 0.01, lambda: None)
        return round((time.monotonic() - started) * 1000)

    def sample_rss(self, key: str) -> None:
        if self.opts.pid:
            self.rss[key] = rss_kib(self.opts.pid)
            self.rss["pids"] = self.opts.pid

    def report(self) -> dict[str, Any]:
        return {"tool": "chatd-bench", "params": self.params, "phases": self.results,
                "rss": self.rss, "max_time_reached": self.max_time_reached}

