"""Redis glob patterns (the MATCH / KEYS syntax, `stringmatchlen`): one parser
for matching keys here (as an equivalent bytes regex) and for deciding whether two
patterns can match a common key (the config refuses a rebuildable category whose
pattern can reach a non-rebuildable one's keys).

A pattern is parsed into positions: `*` (any run of bytes, also none) or the set
of bytes one key byte may be, as a 256-bit mask: `?` any byte, `[a-z]` ranges
(reversed ones too), `[^x]` negation, `\\` escapes (a trailing one matches
itself), an unclosed class runs to the end, `[]` matches no byte, `[^]` any.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterable

STAR = -1
ANY = (1 << 256) - 1
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
# Bytes a witness key is spelled with when the choice is free (readable errors).
_PREFERRED = b"xabcdefghijklmnopqrstuvwyz0123456789:_-."


def escape(text: str) -> str:
    """`text` with the glob characters escaped, so the pattern matches only it."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def prefix_glob(prefix: str) -> str:
    """The pattern of every key under a BullMQ prefix: `<prefix>:*`."""
    return escape(prefix) + ":*"


@functools.lru_cache(maxsize=1024)
def positions(pattern: str) -> tuple[int, ...]:
    """The pattern as positions: STAR, or the mask of the bytes one byte may be.
    Consecutive stars are one."""
    src = pattern.encode("utf-8", "surrogateescape")
    out: list[int] = []
    i, n = 0, len(src)
    while i < n:
        char = src[i]
        if char == ord("*"):
            if not out or out[-1] != STAR:
                out.append(STAR)
        elif char == ord("?"):
            out.append(ANY)
        elif char == ord("\\"):
            if i + 1 < n:  # a trailing backslash matches itself
                i += 1
            out.append(1 << src[i])
        elif char == ord("["):
            i += 1
            negate = i < n and src[i] == ord("^")
            if negate:
                i += 1
            mask = 0
            while i < n and src[i] != ord("]"):  # an unclosed class runs to the end
                if src[i] == ord("\\") and i + 1 < n:
                    i += 1
                    mask |= 1 << src[i]
                elif i + 2 < n and src[i + 1] == ord("-"):
                    low, high = sorted((src[i], src[i + 2]))
                    mask |= ((1 << (high + 1)) - 1) ^ ((1 << low) - 1)
                    i += 2
                else:
                    mask |= 1 << src[i]
                i += 1
            out.append(ANY ^ mask if negate else mask)
        else:
            out.append(1 << char)
        i += 1
    return tuple(out)


def _class(mask: int) -> bytes:
    if mask == ANY:
        return b"."
    if mask == 0:
        return b"(?!)"
    runs: list[bytes] = []
    byte = 0
    while byte < 256:
        if mask >> byte & 1:
            start = byte
            while byte < 255 and mask >> (byte + 1) & 1:
                byte += 1
            runs.append(b"\\x%02x" % start + (b"-\\x%02x" % byte if byte > start else b""))
        byte += 1
    if len(runs) == 1 and b"-" not in runs[0]:
        return runs[0]
    return b"[" + b"".join(runs) + b"]"


def glob_regex(pattern: str) -> bytes:
    """The source of a bytes regex equivalent to the Redis glob `pattern` (use it
    with fullmatch and re.DOTALL)."""
    return b"".join(b".*" if p == STAR else _class(p) for p in positions(pattern))


def compile_any(patterns: Iterable[str]) -> re.Pattern[bytes] | None:
    """One regex matching (fullmatch) a key any of `patterns` matches; None for none."""
    sources = [b"(?:" + glob_regex(p) + b")" for p in patterns]
    return re.compile(b"|".join(sources), re.DOTALL) if sources else None


def _pick(mask: int) -> int:
    for byte in _PREFERRED:
        if mask >> byte & 1:
            return byte
    return (mask & -mask).bit_length() - 1


def common_key(a: str, b: str) -> bytes | None:
    """A shortest key both patterns match, or None when they match no common key.

    A breadth-first walk of the product of the two patterns' automata: a state is
    a position in each pattern; a star may be left without consuming (free), and
    each key byte moves both patterns on (a star stays put), with the byte taken
    from both positions' masks. Each byte moves at least one pattern past a non-star
    position, so there are at most (len a + 1) * (len b + 1) states."""
    pa, pb = positions(a), positions(b)
    start, goal = (0, 0), (len(pa), len(pb))
    best: dict[tuple[int, int], int] = {start: 0}
    came: dict[tuple[int, int], tuple[tuple[int, int], int | None]] = {}
    queue: deque[tuple[int, int]] = deque([start])
    while queue:
        state = queue.popleft()
        i, j = state
        cost = best[state]
        if state == goal:
            key = bytearray()
            while state != start:
                state, byte = came[state]
                if byte is not None:
                    key.append(byte)
            return bytes(reversed(key))
        moves: list[tuple[tuple[int, int], int | None]] = []
        if i < len(pa) and pa[i] == STAR:
            moves.append(((i + 1, j), None))
        if j < len(pb) and pb[j] == STAR:
            moves.append(((i, j + 1), None))
        if i < len(pa) and j < len(pb) and not (pa[i] == STAR and pb[j] == STAR):
            mask = (ANY if pa[i] == STAR else pa[i]) & (ANY if pb[j] == STAR else pb[j])
            if mask:
                moves.append(((i + (pa[i] != STAR), j + (pb[j] != STAR)), _pick(mask)))
        for target, byte in moves:
            step = 0 if byte is None else 1
            if cost + step < best.get(target, cost + step + 1):
                best[target] = cost + step
                came[target] = (state, byte)
                if step:
                    queue.append(target)
                else:
                    queue.appendleft(target)
    return None


def overlaps(a: str, b: str) -> bool:
    """True when some key matches both glob patterns."""
    return common_key(a, b) is not None


def literal_prefix(pattern: str) -> bytes:
    """The bytes every key the pattern matches starts with (up to the first
    position that is a star or more than one byte)."""
    out = bytearray()
    for position in positions(pattern):
        if position == STAR or position & (position - 1):
            break
        if position == 0:
            break
        out.append(position.bit_length() - 1)
    return bytes(out)


def under_prefix(pattern: str, prefix: str) -> bool:
    """True when every key `pattern` matches lies under the BullMQ `prefix`
    (`<prefix>:...`): a category that is BullMQ data itself."""
    return literal_prefix(pattern).startswith(prefix.encode("utf-8", "surrogateescape") + b":")
