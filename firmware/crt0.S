/*
 * crt0.S — the reset entry at 0x80000000: registers, .bss, the trap vector,
 * SDK start-up, constructors, main(), exit().
 *
 * The machine loads every PT_LOAD segment in place (RAM only, no flash), so
 * .data needs no copy; only .tbss and .bss are cleared here.
 */
    .option arch, +zicsr

    .section .text.kalloc_start, "ax", @progbits
    .globl  _start
    .type   _start, @function
_start:
    /* gp must be loaded without relaxation: relaxation would make it gp-relative. */
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      sp, __kalloc_stack_top
    li      s0, 0               /* fp = 0 ends every backtrace walk */
    li      ra, 0
    la      tp, __tls_base      /* picolibc's errno is thread-local */

    la      a0, __bss_start     /* .tbss and .bss, word-aligned by link.ld */
    la      a1, __bss_end
1:  bgeu    a0, a1, 2f
    sw      zero, 0(a0)
    addi    a0, a0, 4
    j       1b
2:
    la      t0, kalloc_trap_vector  /* direct mode: the low two bits are 0 */
    csrw    mtvec, t0

    call    __kalloc_sdk_init   /* bootinfo; interrupts on */
    call    __libc_init_array   /* C constructors */
    li      a0, 0               /* argc */
    li      a1, 0               /* argv */
    call    main

    /*
     * main() returned. Clear the registers: the leak scan at exit treats them
     * and the live stack, [sp, top), as roots, and a stale pointer left in one
     * would hide a real leak. The dead frames below sp are not roots (the
     * machine cuts them out: bridge/stackguard.py), so the stack needs no
     * clearing; sp is back at the top (this code pushed nothing).
     */
    li      ra, 0
    li      t0, 0
    li      t1, 0
    li      t2, 0
    li      s1, 0
    li      a1, 0
    li      a2, 0
    li      a3, 0
    li      a4, 0
    li      a5, 0
    li      a6, 0
    li      a7, 0
    li      s2, 0
    li      s3, 0
    li      s4, 0
    li      s5, 0
    li      s6, 0
    li      s7, 0
    li      s8, 0
    li      s9, 0
    li      s10, 0
    li      s11, 0
    li      t3, 0
    li      t4, 0
    li      t5, 0
    li      t6, 0
    call    exit                /* a0 = main's result; destructors, then _exit */
    .size   _start, . - _start
