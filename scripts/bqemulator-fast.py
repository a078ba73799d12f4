"""Starts the BigQuery emulator (`bqemulator`, same arguments) with SQLGlot's parse memoized.

Why: profiled under `make test` (py-spy, 60 s of the API suite), the emulator spent two thirds
of its time in `sqlglot` parsing, and parsed the very same statement text about fifteen times per
query (each of its checks and rewriters parses the original text again). Our statements are
constant texts with `@param`s bound apart, so the same few hundred texts come back all day.

What: `Dialect.parse` remembers the trees of the last `MAX_ENTRIES` texts it parsed (per dialect
class, settings and parser options) and hands out a deep copy of them, never the remembered tree
itself, so a caller that rewrites its tree changes nothing for the next one. Parsing is a pure
function of (dialect, text, options): the emulator answers exactly as before, sooner. A text
that fails to parse is not remembered (its error is raised again, from a fresh parse).

`python scripts/bqemulator-fast.py check sql` (a stage of `make test`) translates every file in
`sql/` without the memo, then twice with it, and fails unless all three translations are equal.
"""

from __future__ import annotations

import copy
import sys
import threading
from collections import OrderedDict

from sqlglot.dialects.dialect import Dialect

MAX_ENTRIES = 2048

_parse = Dialect.parse
_trees: OrderedDict = OrderedDict()
_lock = threading.Lock()
stats = {"hits": 0, "misses": 0}


def _key(dialect: Dialect, sql: str, opts: dict):
    try:
        settings = tuple(sorted(dialect.settings.items()))
        key = (
            type(dialect),
            dialect.version,
            dialect.normalization_strategy,
            settings,
            tuple(sorted(opts.items())),
            sql,
        )
        hash(key)
        return key
    except TypeError:
        return None


def memo_parse(self: Dialect, sql: str, **opts):
    key = _key(self, sql, opts)
    if key is None:
        return _parse(self, sql, **opts)
    with _lock:
        trees = _trees.get(key)
        if trees is not None:
            _trees.move_to_end(key)
    if trees is not None:
        stats["hits"] += 1
        return copy.deepcopy(trees)
    stats["misses"] += 1
    trees = _parse(self, sql, **opts)
    with _lock:
        _trees[key] = copy.deepcopy(trees)
        while len(_trees) > MAX_ENTRIES:
            _trees.popitem(last=False)
    return trees


def install() -> None:
    Dialect.parse = memo_parse


def check(folder: str) -> int:
    """Every .sql file under `folder` translated by the emulator without the memo, then twice with
    it (a miss, then a hit): 0 when the three agree for every file, 1 otherwise."""
    import logging
    import pathlib

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from bqemulator.sql.translator import SQLTranslator

    translator = SQLTranslator()

    def translate_all() -> dict:
        out = {}
        for path in sorted(pathlib.Path(folder).rglob("*.sql")):
            try:
                out[str(path)] = translator.translate(path.read_text())
            except Exception as error:  # noqa: BLE001 - a file the emulator refuses, compared too
                out[str(path)] = f"error: {type(error).__name__}: {error}"
        return out

    plain = translate_all()
    install()
    first, second = translate_all(), translate_all()
    differ = [p for p in plain if not (plain[p] == first[p] == second[p])]
    for path in differ:
        print(f"{path}: the memoized parse translates it otherwise", file=sys.stderr)
    print(
        f"{len(plain)} statements translated alike with and without the parse memo "
        f"({stats['misses']} parses, {stats['hits']} answered from the memo)"
        if not differ
        else f"{len(differ)} of {len(plain)} statements differ"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["check"]:
        sys.exit(check(sys.argv[2]))
    install()
    from bqemulator.cli import main

    sys.argv[0] = "bqemulator"
    sys.exit(main())
