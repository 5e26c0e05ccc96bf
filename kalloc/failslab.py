"""Fault injection: decide which allocation requests fail (Linux's failslab / fail_page_alloc).

A `FailSlab` is consulted once per allocation request, before the allocator
runs, with a description of the request: its ordinal, the call site's
function, its context and the cache it would come from. It answers "fail it"
or "let it through". It is pure Python and deterministic: the same requests
and the same seed give the same answers.

Rules (docs/user-guide.md, "Fault injection"):
 - A request is *eligible* when it matches every filter given: `site` (the
   function holding the first frame outside the allocator's wrappers),
   `context` ("task", "irq" or "any") and `cache` (the slab cache name, e.g.
   "kmalloc-128" or a kmem_cache_create name; page and DMA-coherent requests
   have no cache and never match a cache filter).
 - Eligible requests are counted 1, 2, 3 ...; the request whose count is in
   `nth` fails. With `probability` P > 0, every eligible request also fails
   with probability P, drawn from a generator seeded with the run's seed
   (one draw per eligible request, so the sequence never depends on timing).
 - Filters alone (no nth, no probability) fail every eligible request.
 - `__GFP_NOFAIL` requests are never counted and never fail (as in Linux,
   should_failslab() returns early for them).

Invariants:
 1. `decide()` is a pure function of the request sequence, the settings and the seed.
 2. `injected` lists every failure decided, in order; `eligible` counts requests seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

CONTEXTS: tuple[str, ...] = ("task", "irq", "any")


@dataclass(frozen=True, slots=True)
class FailConfig:
    """What to fail. Empty `nth`, probability 0 and no filter: inject nothing."""

    nth: tuple[int, ...] = ()
    probability: float = 0.0
    site: str | None = None
    context: str = "any"
    cache: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if any(n < 1 for n in self.nth):
            raise ValueError("--fail-nth counts from 1")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("--fail-prob must be in [0, 1]")
        if self.context not in CONTEXTS:
            raise ValueError(f"--fail-context must be one of {', '.join(CONTEXTS)}")

    @property
    def enabled(self) -> bool:
        return bool(self.nth or self.probability or self.site or self.cache or self.context != "any")


@dataclass(slots=True)
class Request:
    """One allocation request as the injector sees it."""

    api: str  # the service or function name, e.g. "MALLOC", "kmalloc"
    size: int
    gfp: int = 0
    nofail: bool = False
    context: str = "task"  # "task", "irq" or "irqs-off"
    cache: str | None = None
    function: str | None = None  # the call site's function
    site: int = 0  # stack-depot handle of the call site
    extra: dict[str, Any] = field(default_factory=dict)


class FailSlab:
    """The decision procedure (module docstring)."""

    def __init__(self, config: FailConfig) -> None:
        self.config = config
        self.eligible = 0
        self.injected: list[tuple[int, Request]] = []  # (eligible ordinal, request)
        self._rng = random.Random(config.seed)
        self._nth = frozenset(config.nth)

    def matches(self, req: Request) -> bool:
        c = self.config
        if req.nofail:
            return False
        if c.site is not None and req.function != c.site:
            return False
        if c.context == "task" and req.context == "irq":
            return False
        if c.context == "irq" and req.context != "irq":
            return False
        return c.cache is None or req.cache == c.cache

    def decide(self, req: Request) -> bool:
        """Count `req` if eligible and say whether it must fail."""
        c = self.config
        if not c.enabled or not self.matches(req):
            return False
        self.eligible += 1
        n = self.eligible
        fail = n in self._nth
        if c.probability > 0.0 and self._rng.random() < c.probability:
            fail = True
        if not c.nth and c.probability == 0.0:
            fail = True  # filters alone: every eligible request fails
        if fail:
            self.injected.append((n, req))
        return fail
