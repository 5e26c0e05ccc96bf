# _start: set up a stack and a null frame pointer, call main, exit with its result.
    .section .text.start
    .globl _start
_start:
    la      sp, __stack_top
    li      s0, 0
    call    main
    li      a7, 93          # ECALL_EXIT, a0 = main's result
    ecall
1:  j       1b
