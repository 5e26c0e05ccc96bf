"""The machine↔allocator bridge: what a doorbell store from firmware becomes.

    abi.py          the ABI table: services (number, name, arguments, family), the argument
                    block, ecalls, bootinfo; firmware/include/kalloc.h repeats it
    doorbell.py     the dispatch: `Bridge(service, block)` reads the block from guest RAM,
                    decodes context and call site, runs the service, writes the result
    services/       the services, one module per family of the ABI table (misc, pages,
                    slab + kmalloc, libc, dma, vmalloc)
    kasan.py        KASAN on the machine: the shadow, the access hook, the `kasan` family
    vmbridge.py     guards for virtual pointers handed to services that take physical ones,
                    and the leak scan's view of the vmalloc / arena windows
    commit.py       commit accounting: committed pages per kind, high water, headroom
    faultinject.py  fault injection: the doorbell's intercept turns chosen requests into NULL
    dmacheck.py     the DMA engine's check against the allocator (errors that name the buffer)
    record.py       `kalloc run --record`: the run's allocation trace
    internal.py     kalloc's own crashes as `internal` report entries
    stackguard.py   the guard below the SDK's stack: a page translation refuses, a `stack-overflow` report

Each part is installed with the machine, the allocator and the bridge it needs
(explicit arguments); kalloc_machine.session builds and wires them. A hypercall's
path: Machine's doorbell callback -> [commit.install's wrapper] -> doorbell.Bridge.__call__
-> the family's svc_<name> (e.g. services/slab.KmallocServices.svc_kmalloc) -> the
allocator (ka.kmalloc) -> result written back into the block.
"""
