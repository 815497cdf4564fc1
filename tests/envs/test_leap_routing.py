"""LeaP routing and insertion text (envs.leap): every router on summaries whose similarities are
worked out by hand, the edge cases, and the similarity against the InDel definition."""

from __future__ import annotations

import random

import pytest

from envs.leap import (COMMENT_INVITATION, NO_COMMENTS, ROUTERS, SUMMARY_STOP, SUMMARY_TRIGGER,
                       comment_block, route, similarity, similarity_matrix, trim_partial_paragraph)

# Levenshtein.ratio = 1 - indel / (len(a) + len(b)), indel = len(a) + len(b) - 2 * LCS(a, b).
# All strings have length 4, so ratio = 1 - indel / 8 = LCS / 4.
#   0 "aaaa" ~ 1 "aaab": LCS "aaa" 3 -> 0.75     1 "aaab" ~ 2 "abbb": LCS "ab"  2 -> 0.5
#   0 "aaaa" ~ 2 "abbb": LCS "a"   1 -> 0.25     1 "aaab" ~ 3 "bbbb": LCS "b"   1 -> 0.25
#   0 "aaaa" ~ 3 "bbbb": LCS ""    0 -> 0.0      2 "abbb" ~ 3 "bbbb": LCS "bbb" 3 -> 0.75
FOUR = ["aaaa", "aaab", "abbb", "bbbb"]
FOUR_SIM = [[1.0, 0.75, 0.25, 0.0],
            [0.75, 1.0, 0.5, 0.25],
            [0.25, 0.5, 1.0, 0.75],
            [0.0, 0.25, 0.75, 1.0]]


def lcs(a: str, b: str) -> int:
    """Longest common subsequence by dynamic programming, independent of rapidfuzz."""
    row = [0] * (len(b) + 1)
    for ca in a:
        prev_diag, row[0] = 0, 0
        for j, cb in enumerate(b, start=1):
            prev_diag, row[j] = row[j], prev_diag + 1 if ca == cb else max(row[j], row[j - 1])
    return row[-1]


def indel_ratio(a: str, b: str) -> float:
    total = len(a) + len(b)
    return 1.0 if total == 0 else 1 - (total - 2 * lcs(a, b)) / total


# ----- similarity ------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b, expected", [
    ("kitten", "sitting", 8 / 13),  # LCS "ittn" 4: indel 6 + 7 - 8 = 5 -> 1 - 5/13
    ("abcd", "acbd", 0.75),         # LCS "abd" 3: indel 2 -> 1 - 2/8
    ("abc", "", 0.0),               # indel 3 -> 1 - 3/3
    ("", "", 1.0),                  # no characters: identical by convention
    ("Same", "same", 0.75),         # case counts: LCS "ame" 3 -> indel 2 -> 1 - 2/8
    ("ab", "ba", 0.5),              # LCS 1: indel 2 -> 1 - 2/4
])
def test_similarity_is_levenshtein_ratio(a, b, expected):
    assert similarity(a, b) == pytest.approx(expected, abs=1e-12)
    assert similarity(b, a) == similarity(a, b)


def test_similarity_matches_the_indel_definition_on_random_strings():
    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("abc ") for _ in range(rng.randrange(12)))
        b = "".join(rng.choice("abc ") for _ in range(rng.randrange(12)))
        assert similarity(a, b) == pytest.approx(indel_ratio(a, b), abs=1e-12)


def test_similarity_matrix_by_hand():
    assert similarity_matrix(FOUR) == FOUR_SIM


# ----- routers on the hand-made summaries -------------------------------------------------------
@pytest.mark.parametrize("router, k, expected", [
    # path 0 sees 3 (0.0) < 2 (0.25) < 1 (0.75); path 1: 3 (0.25) < 2 (0.5) < 0 (0.75);
    # path 2: 0 (0.25) < 1 (0.5) < 3 (0.75); path 3: 0 (0.0) < 1 (0.25) < 2 (0.75).
    ("dispersed", 1, [[3], [3], [0], [0]]),
    ("dispersed", 2, [[3, 2], [3, 2], [0, 1], [0, 1]]),
    ("clustered", 1, [[1], [0], [3], [2]]),
    ("clustered", 2, [[1, 2], [0, 2], [3, 1], [2, 1]]),
    # hybrid k=1: 0 least + 1 most, the same as clustered
    ("hybrid", 1, [[1], [0], [3], [2]]),
    # hybrid k=2: 1 least + 1 most
    ("hybrid", 2, [[3, 1], [3, 0], [0, 3], [0, 2]]),
    # hybrid k=3: 1 least + 2 most of the rest = every peer once
    ("hybrid", 3, [[3, 1, 2], [3, 0, 2], [0, 3, 1], [0, 2, 1]]),
])
def test_routers_by_hand(router, k, expected):
    assert route(FOUR, k, router) == expected


def test_hybrid_takes_floor_half_least_and_ceil_half_most_without_repeats():
    # Six paths; for path 0 ("aaaaaa") similarity falls as b's replace a's: LCS 6 - (b's) over 6.
    summaries = ["aaaaaa", "aaaaab", "aaaabb", "aaabbb", "aabbbb", "abbbbb"]
    # Path 0: least similar 5, 4, 3, ...; most similar 1, 2, 3, ...
    assert route(summaries, 3, "hybrid")[0] == [5, 1, 2]        # 1 least + 2 most
    assert route(summaries, 4, "hybrid")[0] == [5, 4, 1, 2]     # 2 least + 2 most
    assert route(summaries, 5, "hybrid")[0] == [5, 4, 1, 2, 3]  # all, 3 not twice
    for k in range(7):
        for peers in route(summaries, k, "hybrid"):
            assert len(peers) == len(set(peers)) == min(k, 5)


@pytest.mark.parametrize("router", ROUTERS)
def test_routers_agree_with_a_brute_force_ranking(router):
    rng = random.Random(3)
    summaries = ["".join(rng.choice("ab c") for _ in range(rng.randrange(1, 15))) for _ in range(7)]
    for k in range(8):
        routes = route(summaries, k, router, seed=5)
        for i, peers in enumerate(routes):
            assert i not in peers and len(peers) == len(set(peers)) == min(k, 6)
            others = [j for j in range(7) if j != i]
            least = sorted(others, key=lambda j: (indel_ratio(summaries[i], summaries[j]), j))
            most = sorted(others, key=lambda j: (-indel_ratio(summaries[i], summaries[j]), j))
            if router == "dispersed":
                assert peers == least[:k]
            elif router == "clustered":
                assert peers == most[:k]
            elif router == "hybrid":
                low = least[:min(k, 6) // 2]
                assert peers == low + [j for j in most if j not in low][:min(k, 6) - len(low)]


# ----- edge cases ------------------------------------------------------------------------------
@pytest.mark.parametrize("router", ROUTERS)
def test_edge_cases(router):
    assert route(FOUR, 0, router, seed=0) == [[], [], [], []]
    assert route(["only"], 3, router, seed=0) == [[]]
    assert route([], 2, router, seed=0) == []
    for k in (3, 4, 100):   # three peers each: k >= 3 gives every one of them
        routes = route(FOUR, k, router, seed=0)
        assert [sorted(r) for r in routes] == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]


def test_ties_are_broken_by_the_lower_index():
    # Path 0 "aa": 1 "bb" (0.0) = 2 "cc" (0.0) < 3 "aa" (1.0); path 1 "bb": 0, 2, 3 all 0.0.
    summaries = ["aa", "bb", "cc", "aa"]
    assert route(summaries, 1, "dispersed") == [[1], [0], [0], [1]]
    assert route(summaries, 2, "dispersed") == [[1, 2], [0, 2], [0, 1], [1, 2]]
    assert route(summaries, 1, "clustered") == [[3], [0], [0], [0]]
    assert route(summaries, 2, "clustered") == [[3, 1], [0, 2], [0, 1], [0, 1]]
    # Identical summaries: every similarity is 1.0, so both directions pick by index.
    same = ["x"] * 4
    for router in ("dispersed", "clustered", "hybrid"):
        assert route(same, 2, router) == [[1, 2], [0, 2], [0, 1], [0, 1]]


def test_random_router_is_seeded():
    summaries = [f"summary {i}" for i in range(8)]
    a = route(summaries, 3, "random", seed=7)
    assert a == route(summaries, 3, "random", seed=7)
    assert any(route(summaries, 3, "random", seed=s) != a for s in range(8, 12))
    for i, peers in enumerate(a):
        assert i not in peers and len(peers) == len(set(peers)) == 3
    # Uniform over peers: over many seeds path 0 receives each of 1..7 about 3/7 of the time.
    counts = [0] * 8
    for s in range(700):
        for j in route(summaries, 3, "random", seed=s)[0]:
            counts[j] += 1
    assert counts[0] == 0 and all(abs(c / 700 - 3 / 7) < 0.08 for c in counts[1:])


@pytest.mark.parametrize("k, router, match", [
    (-1, "dispersed", r"k=-1: expected an integer >= 0"),
    (1.5, "dispersed", r"k=1.5: expected an integer >= 0"),
    (True, "dispersed", r"k=True: expected an integer >= 0"),
    (1, "nearest", r"router='nearest': expected one of \('dispersed', 'clustered', 'hybrid', 'random'\)"),
])
def test_bad_arguments_raise_value_error(k, router, match):
    with pytest.raises(ValueError, match=match):
        route(FOUR, k, router)


def test_bad_summaries_raise_value_error():
    with pytest.raises(ValueError, match="summaries="):
        route("abc", 1, "dispersed")
    with pytest.raises(ValueError, match=r"summaries\[1\]=3"):
        route(["a", 3], 1, "dispersed")


# ----- insertion text --------------------------------------------------------------------------
def test_comment_block():
    assert comment_block(["x is 3", "  x is 4\n"]) == (
        '<comment> Peer 1: "x is 3"\nPeer 2: "x is 4" </comment>\n' + COMMENT_INVITATION)
    assert comment_block(["only"]) == '<comment> Peer 1: "only" </comment>\n' + COMMENT_INVITATION
    assert comment_block([]) == NO_COMMENTS == "<comment> No comments </comment>"
    assert "peers' conclusions" in COMMENT_INVITATION


def test_summary_trigger():
    assert SUMMARY_TRIGGER == " <summarize> In short, my current conclusions are that"
    assert SUMMARY_STOP == "</summarize>"


@pytest.mark.parametrize("text, expected", [
    ("First para.\n\nSecond para.\n\nThird, cut mid-sent", "First para.\n\nSecond para."),
    ("One.\n\nTwo.\n  \t\nPartial", "One.\n\nTwo."),           # a blank line may hold spaces
    ("One.\n\n\n\nPartial", "One."),
    ("One.\n\nTwo.\n\n", "One.\n\nTwo."),                      # nothing partial after the last
    ("Line one.\nLine two, no blank line", "Line one.\nLine two, no blank line"),
    ("", ""),
])
def test_trim_partial_paragraph(text, expected):
    assert trim_partial_paragraph(text) == expected
