"""Official test vectors: where a file is, loading it once, and turning it into pytest params.

Paths are relative to ``vectors_root()`` (``$SPACEPANDA_VECTORS`` or ``../shared/vectors``),
e.g. ``"mls/treekem.json"``. A missing file is never an error: parametrised tests get one
placeholder param that is skipped, and in-test loads skip, both naming the path and
``SPACEPANDA_VECTORS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mls.crypto.suite import SUITES
from tests.conftest import vectors_root

__all__ = [
    "Variants",
    "case_id",
    "load_vectors",
    "missing_param",
    "missing_reason",
    "read_vectors",
    "vector_params",
    "vector_path",
]

# What pytest.param returns; pytest exports no public name for its type.
Param = Any
# For one case: (id suffix, extra param values after the case) for each param made from it.
Variants = Callable[[int, Any], Iterable[tuple[str, tuple[Any, ...]]]]


def vector_path(relpath: str) -> Path:
    return vectors_root() / relpath


def missing_reason(relpath: str) -> str:
    return f"test vectors not found at {vector_path(relpath)} (set SPACEPANDA_VECTORS)"


@cache
def _parse(path: Path) -> Any:
    # Several test files and many params share one parse; nothing may mutate a case.
    return json.loads(path.read_text())


def read_vectors(relpath: str) -> Any | None:
    """The parsed JSON file, or None when it is absent (safe at collection time)."""
    path = vector_path(relpath)
    return _parse(path) if path.is_file() else None


def load_vectors(relpath: str) -> Any:
    """The parsed JSON file; inside a test only, since a missing file skips the test."""
    __tracebackhide__ = True  # `pytest -rs` then points at the test, not at this line
    data = read_vectors(relpath)
    if data is None:
        pytest.skip(missing_reason(relpath))
    return data


def missing_param(relpath: str, width: int = 1) -> Param:
    """The one skipped param standing in for an absent file (``width`` = number of argnames)."""
    skip = pytest.mark.skip(reason=missing_reason(relpath))
    return pytest.param(*[None] * width, id=f"{Path(relpath).name}-missing", marks=skip)


def case_id(index: int, case: dict[str, Any], *extra: str) -> str:
    """The usual id of a suite-specific case: ``case3-suite1`` plus ``-extra`` parts."""
    return "-".join((f"case{index}", f"suite{int(case['cipher_suite'])}", *extra))


def vector_params(
    relpath: str,
    ids: Callable[[int, Any], str] | None = None,
    *,
    suite_key: str | None = None,
    select: Callable[[Any], bool] | None = None,
    variants: Variants | None = None,
    width: int = 1,
) -> list[Param]:
    """One param per case of a JSON list file: ``(case,)`` with id ``ids(index, case)``
    (by default ``name.json[index]``).

    ``suite_key``: cases whose ``case[suite_key]`` is not in ``SUITES`` are skipped with
    "suite N not implemented". ``select``: cases it rejects get no param at all (the index
    still counts them). ``variants``: several params per case, ``(case, *values)`` with id
    ``ids(...) + "-" + suffix`` (just ``ids(...)`` for an empty suffix); pass ``width`` (the
    number of argnames) with it so that the missing-file placeholder fits.
    """
    cases = read_vectors(relpath)
    if cases is None:
        return [missing_param(relpath, width)]
    out = []
    for i, case in enumerate(cases):
        if select is not None and not select(case):
            continue
        marks = []
        if suite_key is not None and (cs := int(case[suite_key])) not in SUITES:
            marks.append(pytest.mark.skip(reason=f"suite {cs} not implemented"))
        base = ids(i, case) if ids is not None else f"{Path(relpath).name}[{i}]"
        if variants is None:
            out.append(pytest.param(case, id=base, marks=marks))
            continue
        for suffix, values in variants(i, case):
            name = f"{base}-{suffix}" if suffix else base
            out.append(pytest.param(case, *values, id=name, marks=marks))
    return out
