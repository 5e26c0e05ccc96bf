# Prints a line byte by byte on the UART, then exits 0.
#include "mmio.h"
    .text
    .globl main
main:
    la      t0, msg
    li      t1, UART_BASE
1:  lbu     t2, 0(t0)
    beqz    t2, 2f
    sb      t2, 0(t1)
    addi    t0, t0, 1
    j       1b
2:  li      a0, 0
    ret
    .section .rodata
msg: .asciz "hello from the uart\n"
