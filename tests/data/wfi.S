# Arms the timer at 1,000,000 with mie.MTIE set but interrupts globally off, sleeps in
# wfi (which wakes on the pending timer without trapping), then exits 0 when mtime has
# reached the deadline.
#include "mmio.h"
    .text
    .globl main
main:
    li      t0, MTIMECMP
    li      t1, 1000000
    sw      zero, 4(t0)
    sw      t1, 0(t0)
    li      t0, 0x80
    csrs    mie, t0
    .globl  sleep
sleep:
    wfi
    li      t0, MTIME
    lw      t1, 0(t0)
    li      t2, 1000000
    li      a0, 1
    bltu    t1, t2, 1f
    li      a0, 0
1:  ret
