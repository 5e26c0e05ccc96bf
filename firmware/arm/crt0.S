/*
 * arm/crt0.S — the Cortex-M (ARMv7-M, Thumb-2) image start at 0x80000000:
 * the vector table, then the reset entry: stack, .bss, TLS, SDK start-up,
 * constructors, main(), exit(). The RV32 machine's is ../crt0.S.
 *
 * The machine loads every PT_LOAD segment in place (RAM only, no flash), so
 * .data needs no copy; only .tbss and .bss are cleared here.
 *
 * The vector table is the first thing in the image: the machine reads its
 * handlers at VTOR = 0x80000000 (memlayout.FIRMWARE_LOAD), as a Cortex-M whose
 * reset code wrote VTOR. Word 0 is the initial stack pointer, word 1 the reset
 * entry (the ELF's entry point too), words 2..16 the exceptions: every one
 * goes to kalloc_trap_vector (trap.S), which dispatches on IPSR. The machine
 * takes only two: 15 (SysTick: the board's timer) and 16 (IRQ 0: the
 * interrupt controller's external line); faults are reported by the machine.
 */
    .syntax unified
    .thumb

    .section .text.kalloc_start, "ax", %progbits
    .balign 4
    .globl  kalloc_vector_table
kalloc_vector_table:
    .word   __kalloc_stack_top      /* 0: initial sp */
    .word   _start                  /* 1: reset (Thumb bit set by the linker) */
    .rept   15                      /* 2..16: NMI .. SysTick, IRQ 0 */
    .word   kalloc_trap_vector
    .endr
    .size   kalloc_vector_table, . - kalloc_vector_table

    .weak   kalloc_task_on_psp
    .globl  _start
    .type   _start, %function
    .thumb_func
_start:
    ldr     r0, =__kalloc_stack_top
    mov     sp, r0
    movs    r7, #0              /* fp = 0: no caller */
    mov     lr, r7

    /* The task on the process stack, if the firmware defines a nonzero
     * `kalloc_task_on_psp` (docs/user-guide.md): PSP = the stack's top minus
     * the handlers' part, CONTROL.SPSEL = 1; exceptions then stack their frame
     * on PSP and handlers run on MSP, the top __kalloc_handler_stack_size
     * bytes (link.ld). Default: everything on MSP, as at reset. */
    ldr     r0, =kalloc_task_on_psp
    cbz     r0, 3f
    ldr     r0, [r0]
    cbz     r0, 3f
    ldr     r0, =__kalloc_task_stack_top
    msr     psp, r0
    movs    r0, #2
    msr     control, r0
    isb
3:

    ldr     r0, =__bss_start    /* .tbss and .bss, word-aligned by link.ld */
    ldr     r1, =__bss_end
    movs    r2, #0
1:  cmp     r0, r1
    bhs     2f
    str     r2, [r0], #4
    b       1b
2:
    ldr     r0, =__tls_base     /* picolibc's errno is thread-local */
    bl      _set_tls
    bl      __kalloc_sdk_init   /* bootinfo; interrupts on */
    bl      __libc_init_array   /* C constructors */
    movs    r0, #0              /* argc */
    movs    r1, #0              /* argv */
    bl      main

    /* main() returned: clear the registers (the leak scan at exit treats them
     * as roots; see ../crt0.S). sp is back at the top. */
    movs    r1, #0
    movs    r2, #0
    movs    r3, #0
    movs    r4, #0
    movs    r5, #0
    movs    r6, #0
    movs    r7, #0
    mov     r8, r1
    mov     r9, r1
    mov     r10, r1
    mov     r11, r1
    mov     r12, r1
    bl      exit                /* r0 = main's result; destructors, then _exit */
    .size   _start, . - _start
    .ltorg
