"""Run one fuzz target under atheris (coverage-guided libFuzzer).

    python -m fuzz.run TARGET [libFuzzer options] [CORPUS_DIR ...]

TARGET is a name from ``fuzz.targets.TARGETS`` or ``all``. With no corpus directory given,
``fuzz/corpus/TARGET`` is used (created from ``fuzz.seeds`` if missing). Examples::

    python -m fuzz.run decode_payload -runs=100000
    python -m fuzz.run all -max_total_time=600 -artifact_prefix=/tmp/crash-
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["node", "mls", "dht", "api", "fuzz"]):
    from fuzz import targets

# Not instrumented: only builds the seed files.
from fuzz import seeds


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in (*targets.TARGETS, "all"):
        names = ", ".join([*targets.NAMES, "all"])
        sys.exit(f"usage: python -m fuzz.run TARGET [libFuzzer options] [CORPUS...]\n"
                 f"targets: {names}")
    name, rest = argv[1], argv[2:]
    target = targets.all_targets if name == "all" else targets.TARGETS[name]
    if not any(not a.startswith("-") for a in rest):
        corpus = Path(__file__).parent / "corpus" / name
        if not corpus.is_dir():
            seeds.main(["seeds", str(corpus.parent)])
        rest.append(str(corpus))
    atheris.Setup([argv[0], *rest], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
