"""Who does what: users split over workers and targets, chat pairs, group members, names.

Pure functions of the options, so the parent and the unit tests agree on every assignment.
"""

from __future__ import annotations

import secrets
import string

BLOCK = 4
"""Users are handed out in blocks of four: pair_up works within a block, so both ends of
every pair live in the same worker and the closed loop never crosses a process."""


def worker_ranges(users: int, processes: int) -> list[range]:
    """Contiguous user ranges of whole blocks, as even as possible; never an empty one."""
    blocks = -(-users // BLOCK)
    count = max(1, min(processes, blocks))
    ranges = []
    for w in range(count):
        start = w * blocks // count * BLOCK
        end = min((w + 1) * blocks // count * BLOCK, users)
        ranges.append(range(start, end))
    return ranges


def target_of(user: int, targets: int) -> int:
    """Users go round-robin over the targets: with two, user i is on node i % 2."""
    return user % targets


def resume_target(user: int, targets: int) -> int:
    """Where a user of target 0 goes back in the resume phase: round-robin over the others."""
    return 1 + user % (targets - 1)


def pair_up(online: list[int]) -> list[tuple[int, int]]:
    """(sender, receiver) pairs, chatload's way: blocks a,b,c,d of the online users alternate
    between (a,b)(c,d) and (a,c)(b,d), so with users round-robin over two targets half the
    pairs cross nodes; a leftover pair is taken as it comes."""
    pairs = []
    full = len(online) - len(online) % BLOCK
    for i in range(0, full, BLOCK):
        a, b, c, d = online[i:i + BLOCK]
        pairs += [(a, b), (c, d)] if (i // BLOCK) % 2 == 0 else [(a, c), (b, d)]
    rest = online[full:]
    pairs += [(rest[i], rest[i + 1]) for i in range(0, len(rest) - 1, 2)]
    return pairs


def allocate(total: int, capacities: list[int]) -> list[int]:
    """Spread `total` items over workers as evenly as their capacities allow."""
    quota = [0] * len(capacities)
    left = min(total, sum(capacities))
    while left:
        open_ = [i for i, cap in enumerate(capacities) if quota[i] < cap]
        share = max(1, left // len(open_))
        for i in open_:
            give = min(share, capacities[i] - quota[i], left)
            quota[i] += give
            left -= give
    return quota


def pick_members(online_by_worker: list[list[int]], size: int) -> list[int]:
    """Group members, the first being the creator. All from one worker when one has enough
    users online: the turn-taking then stays inside that process, as a chat pair's loop
    does, with no round trip through the parent per message (a third of the rate on a
    2-core machine). A larger group is taken round-robin from every worker."""
    fullest = max(online_by_worker, key=len, default=[])
    if len(fullest) >= size:
        return fullest[:size]
    members: list[int] = []
    depth = 0
    while len(members) < size and any(depth < len(o) for o in online_by_worker):
        for online in online_by_worker:
            if depth < len(online) and len(members) < size:
                members.append(online[depth])
        depth += 1
    return members


def new_run_id() -> str:
    """Six random lowercase letters. No digits: the bare relay derives a user's id from the
    digits of the name, which must therefore be the user's index alone."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(6))


def user_name(prefix: str, run_id: str, index: int) -> str:
    """`<prefix>_<run id>_<index>`, or `<prefix><index>` with an empty run id (names that are
    the same on every run, for use with --idfile)."""
    return f"{prefix}_{run_id}_{index}" if run_id else f"{prefix}{index}"
