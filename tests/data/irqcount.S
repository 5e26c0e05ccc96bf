# Enables every interrupt controller line and spins 100,000 iterations (about 300,000
# instructions) with interrupts on; the handler claims and counts every line taken.
# Exit code: the number of interrupts taken on line 31 (the injector's test line).
#include "mmio.h"
    .text
    .globl main
main:
    la      t0, trap
    csrw    mtvec, t0
    li      t0, INTC_BASE
    li      t1, -1
    sw      t1, 4(t0)           # enable all lines
    li      t0, 0x800           # mie.MEIE
    csrs    mie, t0
    csrsi   mstatus, 8          # mstatus.MIE
    li      t1, 100000
    .globl  spin
spin:
    addi    t1, t1, -1
    nop
    bnez    t1, spin
    csrci   mstatus, 8
    la      t0, taken
    lw      a0, 0(t0)
    ret

    .align 2
    .globl trap
trap:
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    sw      t2, 8(sp)
1:  li      t0, INTC_BASE
    lw      t1, 8(t0)           # claim
    beqz    t1, 2f
    sw      t1, 8(t0)           # complete
    li      t2, 31
    bne     t1, t2, 1b
    la      t0, taken
    lw      t1, 0(t0)
    addi    t1, t1, 1
    sw      t1, 0(t0)
    j       1b
2:  lw      t0, 0(sp)
    lw      t1, 4(sp)
    lw      t2, 8(sp)
    addi    sp, sp, 16
    mret

    .bss
    .align 2
taken: .space 4
