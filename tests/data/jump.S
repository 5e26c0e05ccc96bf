# Jumps to an address where nothing is mapped.
    .text
    .globl main
main:
    addi    sp, sp, -16
    sw      ra, 12(sp)
    sw      s0, 8(sp)
    addi    s0, sp, 16
    li      t0, 0x40000000
    .globl  wild_jump
wild_jump:
    jalr    t0
    lw      ra, 12(sp)
    lw      s0, 8(sp)
    addi    sp, sp, 16
    ret
