/*
 * arm/trap.S — the exception entry of every vector (crt0.S) and the SDK's one
 * exception return, for the Cortex-M machine.
 *
 * The machine takes an exception at a slice boundary as the hardware does
 * (ARMv7-M B1.5.6): it stacks r0-r3, r12, lr, pc, xPSR on the active stack
 * (the process stack when the task runs on it, else the main stack; 8-byte
 * aligned, bit 9 of the stacked xPSR set when it padded), sets lr to
 * EXC_RETURN, IPSR to the exception number, switches to the main stack and
 * jumps to the vector. PRIMASK is left as it was: only an exception of a
 * higher priority pre-empts a handler (nesting; all priorities are equal at
 * reset). r4-r11 are the handler's to keep (AAPCS), so the C half is called
 * directly:
 *   1. saves r7 and lr (= EXC_RETURN) and keeps 8-byte alignment,
 *   2. bumps kalloc_irq_depth (every hypercall reports it in ctx),
 *   3. SysTick: asks __kalloc_systick_expired() (systick.c) whether the
 *      timer's delay is over (a delay longer than SysTick's 24 bits runs as
 *      several periods), and dispatches nothing when it is not,
 *   4. calls __kalloc_trap(IPSR) in irq.c (15: timer, 16: external line),
 *   5. drops the depth and returns with `bx lr` = EXC_RETURN at
 *      __kalloc_mret: the machine unstacks the frame (exception return).
 */
    .syntax unified
    .thumb
    .cfi_sections .debug_frame  /* the machine unwinds from .debug_frame (link.ld drops .eh_frame) */

    .section .text.kalloc_trap, "ax", %progbits
    .balign 4
    .globl  kalloc_trap_vector
    .type   kalloc_trap_vector, %function
    .thumb_func
kalloc_trap_vector:
    .cfi_startproc
    push    {r7, lr}
    .cfi_def_cfa_offset 8       /* [cfa-4] = EXC_RETURN: the unwinder crosses the */
    .cfi_offset r7, -8          /* exception frame at cfa into the interrupted code */
    .cfi_offset lr, -4
    mov     r7, sp

    ldr     r1, =kalloc_irq_depth
    ldr     r2, [r1]
    adds    r2, r2, #1
    str     r2, [r1]

    mrs     r0, ipsr
    cmp     r0, #15             /* SysTick: is the timer's delay over? */
    bne     1f
    bl      __kalloc_systick_expired
    cbz     r0, 2f              /* no: its next period runs, nothing to dispatch */
    movs    r0, #15
1:  bl      __kalloc_trap
2:

    ldr     r1, =kalloc_irq_depth
    ldr     r2, [r1]
    subs    r2, r2, #1
    str     r2, [r1]

    pop     {r7, lr}
    .globl  __kalloc_mret
    .type   __kalloc_mret, %function
    .thumb_func
__kalloc_mret:
    bx      lr
    .cfi_endproc
    .globl  __kalloc_trap_vector_end
__kalloc_trap_vector_end:
    .size   kalloc_trap_vector, . - kalloc_trap_vector
    .ltorg
