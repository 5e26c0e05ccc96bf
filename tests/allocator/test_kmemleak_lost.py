"""Definitely vs indirectly lost (kalloc.kmemleak's clique pass, as Valgrind's Memcheck splits leaks)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from kalloc import Kalloc, kmemleak
from kalloc.gfp import GFP_KERNEL


def _objs(ka: Kalloc, n: int, size: int = 32) -> list[int]:
    return [ka.kmalloc(size, GFP_KERNEL) for _ in range(n)]


def _scan(ka: Kalloc) -> kmemleak.LeakScan:
    return kmemleak.scan(ka.phys, ka.live_allocations(), [])


def _addrs(objs: list) -> set[int]:
    return {o.addr for o in objs}


def test_lost_list_head_is_definite_and_its_nodes_indirect():
    ka = Kalloc.standalone()
    nodes = _objs(ka, 4)
    head = nodes[2]  # the head is not the lowest address: address order must not decide
    order = [head, nodes[0], nodes[3], nodes[1]]
    for a, b in itertools.pairwise(order):
        ka.phys.write_u32(a, b)  # a->next = b
    res = _scan(ka)
    assert _addrs(res.definitely) == {head}
    assert _addrs(res.indirectly) == set(nodes) - {head}
    assert _addrs(res.lost) == set(nodes)
    assert res.reachable == []


def test_lost_tree_root_is_the_only_definite_one():
    ka = Kalloc.standalone()
    root, left, right, ll, lr = _objs(ka, 5)
    ka.phys.write_u32(right, 0)
    for parent, (a, b) in ((root, (left, right)), (left, (ll, lr))):
        ka.phys.write_u32(parent, a)
        ka.phys.write_u32(parent + 4, b)
    res = _scan(ka)
    assert _addrs(res.definitely) == {root}
    assert _addrs(res.indirectly) == {left, right, ll, lr}


def test_pure_cycle_keeps_one_definite_object_the_lowest_address():
    """Memcheck's clique leader: in a cycle nothing outside points to, one object stays definite."""
    ka = Kalloc.standalone()
    a, b = _objs(ka, 2)
    ka.phys.write_u32(a, b)
    ka.phys.write_u32(b + 8, a + 8)  # an interior pointer back
    res = _scan(ka)
    assert _addrs(res.definitely) == {min(a, b)}
    assert _addrs(res.indirectly) == {max(a, b)}


def test_cycle_pointed_to_from_outside_is_all_indirect_whichever_is_scanned_first():
    """The cycle's leader reached later from another lost object's clique turns indirect."""
    ka = Kalloc.standalone()
    lo, mid, hi = sorted(_objs(ka, 3))
    ka.phys.write_u32(lo, mid)  # cycle lo <-> mid, pointed to from hi (the last leader)
    ka.phys.write_u32(mid, lo)
    ka.phys.write_u32(hi, lo)
    res = _scan(ka)
    assert (_addrs(res.definitely), _addrs(res.indirectly)) == ({hi}, {lo, mid})
    ka.phys.write_u32(lo, mid)  # now: lo -> cycle mid <-> hi (lo is the first leader)
    ka.phys.write_u32(mid, hi)
    ka.phys.write_u32(hi, mid)
    res = _scan(ka)
    assert (_addrs(res.definitely), _addrs(res.indirectly)) == ({lo}, {mid, hi})


def test_self_pointer_is_still_definitely_lost_and_reachable_objects_are_untouched():
    ka = Kalloc.standalone()
    root = ka.kmalloc(64, GFP_KERNEL)  # stands in for .data
    kept, selfref = _objs(ka, 2)
    ka.phys.write_u32(root, kept)
    ka.phys.write_u32(selfref, selfref)
    ka.phys.write_u32(selfref + 4, kept)  # a lost object pointing at a reachable one changes nothing
    live = [o for o in ka.live_allocations() if o.addr != root]
    res = kmemleak.scan(ka.phys, live, [(root, root + 64)])
    assert _addrs(res.reachable) == {kept}
    assert _addrs(res.definitely) == {selfref}
    assert res.indirectly == []


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                                             max_size=3 * n))))  # fmt: skip
def test_split_invariants_on_random_pointer_graphs(graph):
    """Partition; an indirect object has a lost pointer to it; a definite one none from outside its
    lost predecessors' closure; every lost group nothing outside reaches keeps a definite object."""
    n, edges = graph
    ka = Kalloc.standalone()
    objs = _objs(ka, n, 64)
    slots = [0] * n
    for src, dst in edges:
        ka.phys.write_u32(objs[src] + 4 * slots[src], objs[dst])
        slots[src] += 1
    res = _scan(ka)
    definite, indirect = _addrs(res.definitely), _addrs(res.indirectly)
    assert definite | indirect == set(objs) and not definite & indirect
    pointed = {(objs[s], objs[d]) for s, d in edges if s != d}
    preds = {o: {a for a, b in pointed if b == o} for o in objs}
    for o in indirect:
        assert preds[o], "indirectly lost but nothing points to it"
    for o in definite:
        if not preds[o]:
            continue  # no pointer at all: definite by definition
        # pointed to only from objects it reaches itself (its own cycle): allowed for one per group
        reach, todo = {o}, [o]
        while todo:
            x = todo.pop()
            for a, b in pointed:
                if a == x and b not in reach:
                    reach.add(b)
                    todo.append(b)
        assert preds[o] <= reach
    # no pointer at all => definite
    assert {o for o in objs if not preds[o]} <= definite
