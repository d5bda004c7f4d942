"""Tree math against tree-math.json and against brute-force definitions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls import tree_math as tm
from tests.vectors import vector_params

VECTOR = "mls/tree-math.json"
CASES = vector_params(VECTOR)


def _maybe(fn: Any, *args: int) -> int | None:
    try:
        value: int = fn(*args)
    except ValueError:
        return None
    return value


@pytest.mark.parametrize("case", CASES)
def test_tree_math_vector(case: dict[str, Any]) -> None:
    n = case["n_leaves"]
    assert tm.node_width(n) == case["n_nodes"]
    assert tm.root(n) == case["root"]
    width = case["n_nodes"]
    assert [_maybe(tm.left, x) for x in range(width)] == case["left"]
    assert [_maybe(tm.right, x) for x in range(width)] == case["right"]
    assert [_maybe(tm.parent, x, n) for x in range(width)] == case["parent"]
    assert [_maybe(tm.sibling, x, n) for x in range(width)] == case["sibling"]


def _brute_parent(x: int, n: int) -> int:
    """Parent by search: the node one level up whose children include x."""
    for p in range(2 * n - 1):
        if tm.level(p) > 0 and x in (tm.left(p), tm.right(p)):
            return p
    raise AssertionError("no parent")


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32])
def test_paths_match_definitions(n: int) -> None:
    r = tm.root(n)
    for x in range(tm.node_width(n)):
        expected: list[int] = []
        y = x
        while y != r:
            y = _brute_parent(y, n)
            expected.append(y)
        assert tm.direct_path(x, n) == expected
        chain = [x, *expected][:-1]
        assert tm.copath(x, n) == [tm.sibling(c, n) for c in chain]


@pytest.mark.parametrize("n", [1, 2, 8, 16])
def test_common_ancestor_is_lowest_shared(n: int) -> None:
    width = tm.node_width(n)
    for x in range(width):
        for y in range(width):
            ax = [x, *tm.direct_path(x, n)]
            ay = set([y, *tm.direct_path(y, n)])
            lowest = next(a for a in ax if a in ay)
            assert tm.common_ancestor(x, y) == lowest


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20), st.data())
def test_common_ancestor_large_trees(d: int, data: st.DataObject) -> None:
    n = 1 << d
    x = data.draw(st.integers(0, 2 * n - 2))
    y = data.draw(st.integers(0, 2 * n - 2))
    c = tm.common_ancestor(x, y)
    for z in (x, y):
        assert z == c or c in tm.direct_path(z, n)
    if x != c and y != c:
        # Lowest: x and y sit in different children of c.
        assert (x < c) != (y < c)


def test_levels_and_leaf_conversion() -> None:
    assert [tm.level(x) for x in range(8)] == [0, 1, 0, 2, 0, 1, 0, 3]
    assert tm.log2(0) == 0 and tm.log2(1) == 0 and tm.log2(8) == 3 and tm.log2(9) == 3
    for i in range(100):
        x = tm.leaf_to_node(i)
        assert tm.is_leaf(x) and tm.node_to_leaf(x) == i
    assert not tm.is_leaf(7)
    assert tm.node_width(0) == 0


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        (tm.root, (3,)),
        (tm.root, (0,)),
        (tm.parent, (7, 4)),
        (tm.parent, (3, 4)),
        (tm.parent, (-1, 4)),
        (tm.sibling, (3, 4)),
        (tm.direct_path, (7, 4)),
        (tm.copath, (9, 4)),
        (tm.left, (4,)),
        (tm.right, (0,)),
        (tm.node_to_leaf, (3,)),
        (tm.leaf_to_node, (-1,)),
        (tm.level, (-1,)),
        (tm.log2, (-1,)),
        (tm.node_width, (-1,)),
        (tm.parent, (0, 6)),
    ],
)
def test_bounds_rejected(fn: Any, args: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        fn(*args)


def test_root_paths_empty() -> None:
    assert tm.direct_path(0, 1) == [] and tm.copath(0, 1) == []
    assert tm.direct_path(7, 8) == []
