"""Synthetic malloc-lab-style workloads (seeded, deterministic), written in the CS:APP 2002 format.

The shipped traces in kalloc/replay/traces/ that are not wee_alloc's were made by
`python -m kalloc.replay.tracegen DIR`. Each generator mimics a kind of CS:APP malloc-lab
trace:

    mixed-sizes   8 B .. 48 KiB, log-uniform, random lifetimes, 10% reallocs
    binary        alternating small and large objects; the small ones freed, the
                  large ones kept (the classic trap for first fit: holes too small
                  for anything but small objects)
    coalesce      runs of neighbours freed together, then a larger request that fits
                  only if the neighbours were merged
    realloc       a few growing buffers (x1.5) and many small objects around them
    random        uniformly random sizes 1..4 KiB, random frees (malloc-lab's random-bal)
    short-lived   a steady state of many small objects with short lifetimes (the
                  string/list churn of an interpreter)
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from kalloc.replay.trace import ALLOC, FREE, REALLOC, Op


def _loguniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _balanced(ops: list[Op], live: set[int], rng: random.Random) -> list[Op]:
    rest = sorted(live)
    rng.shuffle(rest)
    return ops + [Op(FREE, i) for i in rest]


def mixed_sizes(seed: int = 1, n: int = 4000) -> list[Op]:
    rng = random.Random(seed)
    ops: list[Op] = []
    live: set[int] = set()
    nid = 0
    for _ in range(n):
        r = rng.random()
        if live and r < 0.40:
            i = rng.choice(sorted(live))
            live.discard(i)
            ops.append(Op(FREE, i))
        elif live and r < 0.50:
            ops.append(Op(REALLOC, rng.choice(sorted(live)), _loguniform(rng, 8, 48 << 10)))
        else:
            ops.append(Op(ALLOC, nid, _loguniform(rng, 8, 48 << 10)))
            live.add(nid)
            nid += 1
    return _balanced(ops, live, rng)


def binary(seed: int = 2, n: int = 1200) -> list[Op]:
    rng = random.Random(seed)
    ops: list[Op] = []
    small = []
    for i in range(n):
        size = rng.choice((64, 448)) if i % 2 == 0 else rng.choice((16, 24))
        ops.append(Op(ALLOC, i, size))
        if i % 2:
            small.append(i)
    ops += [Op(FREE, i) for i in small]
    big = [Op(ALLOC, n + k, 512) for k in range(n // 4)]
    return _balanced(ops + big, {i for i in range(0, n, 2)} | {n + k for k in range(n // 4)}, rng)


def coalesce(seed: int = 3, rounds: int = 60) -> list[Op]:
    rng = random.Random(seed)
    ops: list[Op] = []
    nid = 0
    keep: set[int] = set()
    for _ in range(rounds):
        run = []
        size = rng.choice((32, 96, 200, 1000))
        for _ in range(8):
            ops.append(Op(ALLOC, nid, size))
            run.append(nid)
            nid += 1
        ops.append(Op(ALLOC, nid, 64))  # a fence that stays
        keep.add(nid)
        nid += 1
        ops += [Op(FREE, i) for i in run]
        ops.append(Op(ALLOC, nid, size * 7))
        keep.add(nid)
        nid += 1
    return _balanced(ops, keep, rng)


def realloc_growth(seed: int = 4, n: int = 3000) -> list[Op]:
    rng = random.Random(seed)
    ops: list[Op] = []
    bufs = {i: 64 for i in range(4)}
    ops += [Op(ALLOC, i, 64) for i in bufs]
    nid, live = 4, set[int]()
    for _ in range(n):
        if rng.random() < 0.3:
            b = rng.choice(sorted(bufs))
            bufs[b] = min(int(bufs[b] * 1.5) + 1, 64 << 10)
            ops.append(Op(REALLOC, b, bufs[b]))
        elif live and rng.random() < 0.5:
            i = rng.choice(sorted(live))
            live.discard(i)
            ops.append(Op(FREE, i))
        else:
            ops.append(Op(ALLOC, nid, _loguniform(rng, 8, 512)))
            live.add(nid)
            nid += 1
    return _balanced(ops, live | set(bufs), rng)


def random_bal(seed: int = 5, n: int = 4800) -> list[Op]:
    rng = random.Random(seed)
    ops: list[Op] = []
    live: set[int] = set()
    for i in range(n // 2):
        ops.append(Op(ALLOC, i, rng.randint(1, 4096)))
        live.add(i)
        if rng.random() < 0.5:
            j = rng.choice(sorted(live))
            live.discard(j)
            ops.append(Op(FREE, j))
    return _balanced(ops, live, rng)


def short_lived(seed: int = 6, n: int = 6000) -> list[Op]:
    rng = random.Random(seed)
    ops: list[Op] = []
    window: list[int] = []
    for i in range(n):
        ops.append(Op(ALLOC, i, rng.choice((8, 12, 16, 24, 32, 40, 56, 72, 100, 136, 200))))
        window.append(i)
        if len(window) > 400:
            j = window.pop(rng.randrange(len(window)))
            ops.append(Op(FREE, j))
    return _balanced(ops, set(window), rng)


GENERATORS = {
    "mixed-sizes": mixed_sizes,
    "binary": binary,
    "coalesce": coalesce,
    "realloc": realloc_growth,
    "random": random_bal,
    "short-lived": short_lived,
}


def malloc_lab_text(ops: list[Op]) -> str:
    """The CS:APP 2002 format: <heap size> <ids> <ops> <weight>, then a/r/f lines."""
    ids = {op.id for op in ops}
    lines = ["20000", str(max(ids) + 1 if ids else 0), str(len(ops)), "1"]
    for op in ops:
        lines.append(f"f {op.id}" if op.kind == FREE else f"{op.kind} {op.id} {op.size}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    out = Path(argv[0] if argv else ".")
    out.mkdir(parents=True, exist_ok=True)
    for name, gen in GENERATORS.items():
        (out / f"{name}.rep").write_text(malloc_lab_text(gen()))


if __name__ == "__main__":
    main(sys.argv[1:])
