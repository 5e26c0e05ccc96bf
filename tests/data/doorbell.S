# Builds an argument block on the stack and rings doorbell 5 (MARK) with its address,
# then exits with the block's result slot (whatever the hypercall handler wrote).
#include "mmio.h"
    .text
    .globl main
main:
    addi    sp, sp, -48
    sw      zero, 0(sp)         # result
    sw      zero, 4(sp)         # aux
    sw      ra, 8(sp)
    sw      s0, 12(sp)
    sw      zero, 16(sp)        # ctx
    li      t0, 1234
    sw      t0, 20(sp)          # a0
    li      t0, DOORBELL_BASE
    .globl  ring
ring:
    sw      sp, 4*5(t0)
    lw      a0, 0(sp)
    addi    sp, sp, 48
    ret
