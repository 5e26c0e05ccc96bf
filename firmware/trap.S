/*
 * trap.S — the trap vector (mtvec, direct mode) and the SDK's only mret.
 *
 * The machine enters here at a slice boundary with mepc/mcause written and
 * MIE cleared (MPIE keeps the old value). The vector:
 *   1. saves ra, t0-t6, a0-a7 (everything a C call may clobber) and s0,
 *   2. builds a frame-pointer frame whose "return address" slot holds mepc,
 *      so a backtrace from a handler walks on into the interrupted code,
 *   3. bumps kalloc_irq_depth (every hypercall reports it in ctx),
 *   4. calls __kalloc_trap(mcause) in irq.c,
 *   5. drops the depth, restores, and returns through __kalloc_mret.
 *
 * The frame (80 bytes, keeps sp 16-byte aligned; s0 = sp + 80 = entry sp):
 *   s0-4  mepc            the interrupted pc (exact, not a return address)
 *   s0-8  s0              the interrupted frame pointer
 *   sp+0..sp+60           ra, t0-t6, a0-a7
 * A walker recognises this frame when the return address it came from lies
 * in [kalloc_trap_vector, __kalloc_trap_vector_end).
 *
 * The host marks __kalloc_mret (every mret) and performs it in a trap: at
 * that instruction kalloc_irq_depth is already the interrupted context's.
 */
    .option arch, +zicsr

#define FRAME 80

    .section .text.kalloc_trap, "ax", @progbits
    .balign 4
    .globl  kalloc_trap_vector
    .type   kalloc_trap_vector, @function
kalloc_trap_vector:
    addi    sp, sp, -FRAME
    sw      ra, 0(sp)
    sw      t0, 4(sp)
    sw      t1, 8(sp)
    sw      t2, 12(sp)
    sw      t3, 16(sp)
    sw      t4, 20(sp)
    sw      t5, 24(sp)
    sw      t6, 28(sp)
    sw      a0, 32(sp)
    sw      a1, 36(sp)
    sw      a2, 40(sp)
    sw      a3, 44(sp)
    sw      a4, 48(sp)
    sw      a5, 52(sp)
    sw      a6, 56(sp)
    sw      a7, 60(sp)
    sw      s0, FRAME-8(sp)
    csrr    t0, mepc
    sw      t0, FRAME-4(sp)
    addi    s0, sp, FRAME

    la      t0, kalloc_irq_depth
    lw      t1, 0(t0)
    addi    t1, t1, 1
    sw      t1, 0(t0)

    csrr    a0, mcause
    call    __kalloc_trap

    la      t0, kalloc_irq_depth
    lw      t1, 0(t0)
    addi    t1, t1, -1
    sw      t1, 0(t0)

    lw      ra, 0(sp)
    lw      t0, 4(sp)
    lw      t1, 8(sp)
    lw      t2, 12(sp)
    lw      t3, 16(sp)
    lw      t4, 20(sp)
    lw      t5, 24(sp)
    lw      t6, 28(sp)
    lw      a0, 32(sp)
    lw      a1, 36(sp)
    lw      a2, 40(sp)
    lw      a3, 44(sp)
    lw      a4, 48(sp)
    lw      a5, 52(sp)
    lw      a6, 56(sp)
    lw      a7, 60(sp)
    lw      s0, FRAME-8(sp)
    addi    sp, sp, FRAME
    .globl  __kalloc_mret
__kalloc_mret:
    mret
    .globl  __kalloc_trap_vector_end
__kalloc_trap_vector_end:
    .size   kalloc_trap_vector, . - kalloc_trap_vector
