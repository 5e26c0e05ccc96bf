"""The hypercall bridge over a plain allocator, no CPU: every value from firmware is untrusted.

A fake machine records what the bridge reports; argument blocks are written into
RAM by hand, exactly as the SDK's stub lays them out (kalloc_machine.bridge.abi).
"""

from __future__ import annotations

import struct

import pytest
from kalloc_machine.bridge import abi
from kalloc_machine.bridge.doorbell import Bridge
from kalloc_machine.bridge.services import serve_standard

from kalloc import Context, Kalloc
from kalloc.gfp import GFP_ATOMIC, GFP_KERNEL
from kalloc.physmem import PhysMem

BLOCK = 0x8000_1000  # an argument block somewhere in RAM
STACK = 0x8000_2000  # a fake frame for the backtrace walk
NAME = 0x8000_3000


class FakeMachine:
    def __init__(self, ka: Kalloc) -> None:
        self.phys = ka.phys
        self.reported: list = []
        self.fatal_errors: list = []
        self.services = None

    def report(self, err) -> None:
        self.reported.append(err)

    def fatal(self, err) -> None:
        self.fatal_errors.append(err)


@pytest.fixture
def env():
    # the first 64 KiB play the firmware image: blocks, stack and strings live there
    ka = Kalloc(PhysMem.standalone(), reserved=[(0x8000_0000, 0x8001_0000, "firmware")])
    machine = FakeMachine(ka)
    out: list[bytes] = []
    bridge = Bridge(machine, ka)
    machine.services = serve_standard(bridge, ka, console=out.append)  # kept at hand for the counters
    return ka, machine, bridge, out


def call(bridge: Bridge, service: str | int, *args: int, ctx: int = abi.CTX_MIE, block: int = BLOCK):
    number = abi.SERVICE_BY_NAME[service].number if isinstance(service, str) else service
    phys = bridge.phys
    if phys.contains(block, abi.BLOCK_SIZE):
        words = [0xDEAD, 0xBEEF, 0x8000_0123, STACK, ctx, *args, *[0] * (abi.MAX_ARGS - len(args))]
        phys.write(block, struct.pack("<11I", *words))
        phys.write_u32(STACK - 8, 0)  # the stub's caller frame: end of chain
    bridge(number, block)
    if phys.contains(block, 8):
        return struct.unpack("<II", phys.read(block, 8))
    return None


def kinds(machine: FakeMachine) -> list[str]:
    return [e.kind for e in machine.reported]


def test_kmalloc_and_kfree_round_trip(env):
    ka, machine, bridge, _ = env
    ptr, _aux = call(bridge, "KMALLOC", 96, GFP_KERNEL)
    assert ptr and ka.ksize(ptr) == 96
    call(bridge, "KFREE", ptr)
    assert machine.reported == [] and machine.fatal_errors == []
    ka.check()


def test_block_outside_ram_is_fatal(env):
    _ka, machine, bridge, _ = env
    call(bridge, "KMALLOC", 8, GFP_KERNEL, block=0x1234)
    assert [e.kind for e in machine.fatal_errors] == ["bad-hypercall"]
    assert "argument block" in machine.fatal_errors[0].message


def test_misaligned_block_is_fatal(env):
    _ka, machine, bridge, _ = env
    bridge(abi.SERVICE_BY_NAME["NOP"].number, BLOCK + 2)
    assert [e.kind for e in machine.fatal_errors] == ["bad-hypercall"]


def test_unknown_service_is_reported_with_einval(env):
    _ka, machine, bridge, _ = env
    result, aux = call(bridge, 999, 1, 2)
    assert (result, aux) == (0, 22)
    assert kinds(machine) == ["bad-hypercall"]


def test_wild_free_is_invalid_free_and_state_survives(env):
    ka, machine, bridge, _ = env
    keep, _ = call(bridge, "KMALLOC", 64, GFP_KERNEL)
    result, _ = call(bridge, "KFREE", 0x9FFF_FFF0)
    assert result == 0
    call(bridge, "KFREE", keep + 4)  # interior pointer
    assert kinds(machine) == ["invalid-free", "invalid-free"]
    ka.check()
    call(bridge, "KFREE", keep)
    ka.check()


def test_unknown_gfp_bits_are_rejected(env):
    ka, machine, bridge, _ = env
    result, _ = call(bridge, "KMALLOC", 32, 0x8000_0000)
    assert result == 0
    assert kinds(machine) == ["bad-hypercall"]
    ka.check()


def test_huge_size_fails_cleanly(env):
    ka, machine, bridge, _ = env
    result, _ = call(bridge, "KMALLOC", 0xFFFF_FFF0, GFP_KERNEL)
    assert result == 0
    assert kinds(machine) in (["oom"], ["bad-hypercall"])
    ka.check()


def test_bogus_cache_handle(env):
    _ka, machine, bridge, _ = env
    result, _ = call(bridge, "CACHE_ALLOC", 4242, GFP_KERNEL)
    assert result == 0
    assert kinds(machine) == ["bad-hypercall"]
    assert "never created" in machine.reported[0].message


def test_cache_name_must_be_ram(env):
    _ka, machine, bridge, _ = env
    result, _ = call(bridge, "CACHE_CREATE", 0x10, 64, 0, 0, 0)
    assert result == 0
    assert kinds(machine) == ["bad-hypercall"]


def test_cache_with_firmware_ctor_reports_fresh_objects(env):
    ka, machine, bridge, _ = env
    ka.phys.write(NAME, b"things\0")
    handle, _ = call(bridge, "CACHE_CREATE", NAME, 72, 0, 0, 0x8000_0400)
    assert handle
    obj, fresh = call(bridge, "CACHE_ALLOC", handle, GFP_KERNEL)
    assert obj and fresh == 1
    call(bridge, "CACHE_FREE", handle, obj)
    again, fresh = call(bridge, "CACHE_ALLOC", handle, GFP_KERNEL)
    assert again == obj and fresh == 0  # constructed objects come back constructed
    assert machine.reported == []


def test_context_comes_from_the_block(env):
    _ka, machine, bridge, _ = env
    irq_ctx = 1 << abi.CTX_DEPTH_SHIFT  # depth 1, MIE clear (inside a handler)
    ptr, _ = call(bridge, "KMALLOC", 32, GFP_KERNEL, ctx=irq_ctx)
    assert ptr  # served, as Linux does, but reported
    assert kinds(machine) == ["invalid-context"]
    ptr2, _ = call(bridge, "KMALLOC", 32, GFP_ATOMIC, ctx=irq_ctx)
    assert ptr2 and kinds(machine) == ["invalid-context"]
    assert machine.services.irq.irq.allocs == 2
    off, _ = call(bridge, "KMALLOC", 32, GFP_KERNEL, ctx=0)  # task, interrupts disabled
    assert off and kinds(machine) == ["invalid-context", "invalid-context"]
    assert "disabled" in machine.reported[-1].message


def test_site_is_the_return_address_and_the_frame_chain(env):
    ka, _machine, bridge, _ = env
    ka.phys.write_u32(STACK - 8, STACK + 0x100)  # caller's frame pointer
    ka.phys.write_u32(STACK + 0x100 - 4, 0x8000_0456)  # the caller's return address
    ka.phys.write_u32(STACK + 0x100 - 8, 0)
    number = abi.SERVICE_BY_NAME["KMALLOC"].number
    words = [0, 0, 0x8000_0123, STACK, abi.CTX_MIE, 40, GFP_KERNEL, 0, 0, 0, 0]
    ka.phys.write(BLOCK, struct.pack("<11I", *words))
    bridge(number, BLOCK)
    ptr = ka.phys.read_u32(BLOCK)
    site = next(a.site for a in ka.live_allocations() if a.addr == ptr)
    assert ka.depot.get(site) == (0x8000_0123, 0x8000_0456)


def test_console_write_and_bad_buffer(env):
    ka, machine, bridge, out = env
    ka.phys.write(NAME, b"hi!\n")
    assert call(bridge, "CONSOLE_WRITE", NAME, 4)[0] == 4
    assert out == [b"hi!\n"]
    call(bridge, "CONSOLE_WRITE", 0x20, 4)
    assert kinds(machine) == ["bad-hypercall"]


def test_context_enum_is_what_the_allocator_sees():
    assert {c.name for c in Context} >= {"TASK", "IRQ", "IRQS_OFF"}


def test_a_python_exception_in_a_service_is_internal_and_fatal(env):
    _ka, machine, bridge, _ = env

    def broken(caller, *args):
        raise KeyError("no such slab")

    bridge.register("KMALLOC", broken)
    before = call(bridge, "NOP")
    assert call(bridge, "KMALLOC", 8, GFP_KERNEL) == (0xDEAD, 0xBEEF)  # nothing written back
    assert before == (0, 0) and machine.reported == []
    (err,) = machine.fatal_errors
    assert (err.kind, err.severity) == ("internal", "error")
    assert err.fields["service"] == "KMALLOC" and err.fields["service_number"] == 32
    assert err.fields["exception"]["type"] == "KeyError" and "KMALLOC (32)" in err.message
    assert err.site is not None  # the firmware's call site, for the report's pc and backtrace


def test_a_python_exception_in_the_intercept_is_internal(env):
    _ka, machine, bridge, _ = env

    def broken(service, caller, args):
        raise ZeroDivisionError("oops")

    bridge.intercept = broken
    call(bridge, "KMALLOC", 8, GFP_KERNEL)
    assert [e.kind for e in machine.fatal_errors] == ["internal"]
    assert "ZeroDivisionError: oops" in machine.fatal_errors[0].message


def test_every_service_of_the_standard_families_is_served(env):
    _ka, _machine, bridge, _ = env
    standard = {"misc", "pages", "slab", "kmalloc", "libc", "dma"}
    for svc in abi.SERVICES:
        assert (bridge.handler(svc.name) is not None) == (svc.family in standard), svc.name
    assert set(abi.FAMILIES) == {svc.family for svc in abi.SERVICES}
