"""Can two Redis glob patterns match a common key? The check behind the config's
refusal of a rebuildable category that overlaps a non-rebuildable one (issue 11
item 3), tested against brute force: every key up to the length a shortest common
key can need, over an alphabet with one byte of each kind the patterns tell apart,
matched with the glob rules `test_keyspace` checks against Redis' own MATCH."""

from __future__ import annotations

import itertools
import random

import pytest

from redis_runbook.globs import common_key, overlaps, prefix_glob, under_prefix
from redis_runbook.keyspace import compile_glob


@pytest.mark.parametrize(
    ("a", "b", "witness"),
    [
        ("*", "bull:*", b"bull:"),
        ("cache:*", "cache:hot:*", b"cache:hot:"),
        ("c?che:*", "cache:*", b"cache:"),
        ("a*", "*b", b"ab"),
        ("ab*", "*aa", b"abaa"),
        ("\\*", "?", b"*"),
        ("x\\", "x?", b"x\\"),  # a trailing backslash matches itself
        ("[a-c]x", "[^ab]x", b"cx"),
        ("[c-a]x", "c?", b"cx"),  # a reversed range is the same range
        ("{bull}:*", "{bull}*", b"{bull}:"),  # braces are not special
        ("*", "", b""),
        ("h[\\]]llo", "h]*", b"h]llo"),
        ("[^]", "\x7f", b"\x7f"),  # [^] is any one byte
        ("*[ab", "*b", b"b"),  # an unclosed class runs to the end of the pattern
    ],
)
def test_overlapping_patterns_and_a_shortest_common_key(a: str, b: str, witness: bytes) -> None:
    assert overlaps(a, b)
    assert overlaps(b, a)
    assert common_key(a, b) == witness
    assert compile_glob(a).fullmatch(witness)
    assert compile_glob(b).fullmatch(witness)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("cache:*", "bull:*"),
        ("ratelimit:*", "r[^a]*"),
        ("[a-c]x", "[^abc]x"),
        ("\\*", "a"),
        ("[]", "*"),  # [] matches no byte
        ("[]*", "*"),
        ("a?", "a"),
        ("bull:*", "{bull}:*"),
        ("*a", "*b"),
        ("a*a*", "b*"),
        ("\\?", "[^?]"),
    ],
)
def test_disjoint_patterns(a: str, b: str) -> None:
    assert not overlaps(a, b)
    assert not overlaps(b, a)
    assert common_key(a, b) is None


def test_prefix_globs() -> None:
    assert prefix_glob("bull") == "bull:*"
    assert prefix_glob("{bull}") == "{bull}:*"
    assert prefix_glob("a*b[c]?\\") == "a\\*b\\[c\\]\\?\\\\:*"
    assert compile_glob(prefix_glob("a*b[c]?\\")).fullmatch(b"a*b[c]?\\:q:1")
    assert not compile_glob(prefix_glob("a*b")).fullmatch(b"axxb:q:1")
    assert under_prefix("bull:*", "bull")
    assert under_prefix("bull:[a-z]*:1", "bull")
    assert not under_prefix("bull*", "bull")
    assert not under_prefix("b?ll:*", "bull")
    assert not under_prefix("*", "bull")


# Pieces of patterns (each one position of a key, or `*`), and an alphabet with one
# byte for each set of pieces that accept it: a b c * \ ] - and `z` for any other byte.
PIECES = [
    "a", "b", "-", "]", "?", "*", "\\*", "\\\\", "\\a",
    "[ab]", "[^a]", "[a-c]", "[c-a]", "[]", "[^]", "[\\]]", "[-a]", "[*\\\\]",
]  # fmt: skip
LAST_PIECES = ["[ab", "[^b", "\\"]  # an unclosed class, a trailing backslash
ALPHABET = [b"a", b"b", b"c", b"*", b"\\", b"]", b"-", b"z"]
MAX_PIECES = 3
# A shortest common key consumes, at each byte, a non-star piece of at least one
# pattern (one without `*` fixes the length outright): 3 pieces each, 4 bytes at most.
MAX_KEY = 4


def random_patterns(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    patterns = set(PIECES) | set(LAST_PIECES) | {""}
    while len(patterns) < count:
        size = rng.randint(1, MAX_PIECES)
        pieces = [rng.choice(PIECES) for _ in range(size)]
        if rng.random() < 0.2:
            pieces[-1] = rng.choice(LAST_PIECES)
        patterns.add("".join(pieces))
    return sorted(patterns)


def test_agrees_with_brute_force_on_a_small_alphabet() -> None:
    keys = [
        b"".join(chars)
        for size in range(MAX_KEY + 1)
        for chars in itertools.product(ALPHABET, repeat=size)
    ]
    patterns = random_patterns(400)
    matches: dict[str, int] = {}
    for pattern in patterns:
        regex = compile_glob(pattern)
        matches[pattern] = sum(1 << i for i, key in enumerate(keys) if regex.fullmatch(key))
    checked = overlapping = 0
    for a, b in itertools.combinations_with_replacement(patterns, 2):
        both = matches[a] & matches[b]
        expected = keys[(both & -both).bit_length() - 1] if both else None  # the shortest
        witness = common_key(a, b)
        assert (witness is not None) == (expected is not None), (a, b, expected, witness)
        if witness is not None and expected is not None:
            assert len(witness) == len(expected), (a, b, expected, witness)
            assert compile_glob(a).fullmatch(witness), (a, b, witness)
            assert compile_glob(b).fullmatch(witness), (a, b, witness)
            overlapping += 1
        checked += 1
    assert checked > 20_000
    assert 0.1 * checked < overlapping < 0.9 * checked  # both answers are well exercised
