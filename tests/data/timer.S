# Arms the timer 5000 instructions ahead, enables interrupts, spins until the handler
# has run. The handler records mcause and disarms the timer. Exit 0 when mcause was the
# machine timer interrupt (0x80000007) and the handler ran exactly once.
#include "mmio.h"
    .text
    .globl main
main:
    la      t0, trap
    csrw    mtvec, t0
    li      t0, MTIME
    lw      t1, 0(t0)
    li      t2, 5000
    add     t1, t1, t2
    li      t0, MTIMECMP
    sw      zero, 4(t0)
    sw      t1, 0(t0)
    li      t0, 0x80            # mie.MTIE
    csrs    mie, t0
    csrsi   mstatus, 8          # mstatus.MIE
    la      t0, seen
1:  lw      t1, 0(t0)
    beqz    t1, 1b
    la      t0, count
    lw      t1, 0(t0)
    li      a0, 2
    li      t2, 1
    bne     t1, t2, 2f
    la      t0, seen
    lw      t1, 0(t0)
    li      t2, 0x80000007
    li      a0, 1
    bne     t1, t2, 2f
    li      a0, 0
2:  ret

    .align 2
    .globl trap
trap:
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    csrr    t1, mcause
    la      t0, seen
    sw      t1, 0(t0)
    la      t0, count
    lw      t1, 0(t0)
    addi    t1, t1, 1
    sw      t1, 0(t0)
    li      t0, MTIMECMP        # disarm: mtimecmp = all ones
    li      t1, -1
    sw      t1, 0(t0)
    sw      t1, 4(t0)
    lw      t0, 0(sp)
    lw      t1, 4(sp)
    addi    sp, sp, 16
    mret

    .bss
    .align 2
    .globl seen
seen:  .space 4
count: .space 4
