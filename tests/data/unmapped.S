# Loads from address 0x100: nothing is mapped there.
    .text
    .globl main
main:
    li      t1, 0x100
    .globl  bad_load
bad_load:
    lw      a0, 0(t1)
    ret
