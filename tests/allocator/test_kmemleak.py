"""The conservative leak scan: reachable chains are not leaks; unreferenced objects are."""

from __future__ import annotations

from kalloc import Kalloc, kmemleak
from kalloc.gfp import GFP_KERNEL


def test_chain_from_a_root_is_reachable_and_orphans_are_lost():
    ka = Kalloc.standalone()
    phys = ka.phys
    root = ka.kmalloc(64, GFP_KERNEL)  # stands in for the firmware's .data
    a = ka.kmalloc(32, GFP_KERNEL)
    b = ka.kmalloc(32, GFP_KERNEL)
    orphan = ka.kmalloc(32, GFP_KERNEL)
    marked = ka.kmalloc(32, GFP_KERNEL)
    ka.not_leak(marked)
    phys.write_u32(a + 8, b + 4)  # interior pointer still references b
    live = [o for o in ka.live_allocations() if o.addr != root]
    res = kmemleak.scan(phys, live, [(root, root + 64)], root_values=[0])
    # b is referenced only from a, which nothing reachable references: both are lost
    assert {o.addr for o in res.lost} == {a, b, orphan}
    phys.write_u32(root, a)
    res = kmemleak.scan(phys, live, [(root, root + 64)])
    assert {o.addr for o in res.reachable} == {a, b}
    assert {o.addr for o in res.lost} == {orphan}
    assert marked not in {o.addr for o in res.lost + res.reachable}


def test_register_values_are_roots():
    ka = Kalloc.standalone()
    x = ka.kmalloc(100, GFP_KERNEL)
    res = kmemleak.scan(ka.phys, ka.live_allocations(), [], root_values=[x + 99])
    assert [o.addr for o in res.reachable] == [x]
    res = kmemleak.scan(ka.phys, ka.live_allocations(), [], root_values=[x + 100 + 64])
    assert [o.addr for o in res.lost] == [x]
