# Fills the DMA engine's device buffer with a pattern, copies `dma_len` bytes of it to
# `dma_dst` (both patchable by a test before the run) three times, each time sleeping
# until the completion interrupt, and checks the result.
# Exit: 0 copied and verified; 3 the engine reported an error; 4 data mismatch;
# 5 the handler claimed the wrong line.
#include "mmio.h"
    .text
    .globl main
main:
    li      t0, DMA_BUF         # buffer word i = 0xA5000000 + i
    li      t1, 0
    li      t2, 512
    li      t3, 0xA5000000
1:  add     t4, t3, t1
    slli    t5, t1, 2
    add     t5, t5, t0
    sw      t4, 0(t5)
    addi    t1, t1, 1
    bne     t1, t2, 1b
    la      t0, trap
    csrw    mtvec, t0
    li      t0, INTC_BASE
    li      t1, 2               # enable line 1 (the DMA engine's)
    sw      t1, 4(t0)
    li      t0, 0x800           # mie.MEIE
    csrs    mie, t0
    csrci   mstatus, 8          # interrupts off: the wait loop opens them for one instruction
    li      s1, 0               # transfers completed so far
next:
    li      t0, DMA_BASE
    li      t1, DMA_BUF
    sw      t1, 0(t0)           # src
    la      t2, dma_dst
    lw      t1, 0(t2)
    sw      t1, 4(t0)           # dst
    la      t2, dma_len
    lw      t1, 0(t2)
    sw      t1, 8(t0)           # len
    li      t1, 1
    sw      t1, 12(t0)          # ctrl: start
    addi    s1, s1, 1
    la      t2, dma_spin        # keep busy with interrupts off while the transfer runs: the
    lw      t3, 0(t2)           # completion is pending (masked) before the loop reaches wfi
6:  addi    t3, t3, -1
    bnez    t3, 6b
    la      t0, done
2:  lw      t1, 0(t0)           # the SDK's idle loop: test with interrupts off, sleep,
    bgeu    t1, s1, 3f          # then let the pending interrupt in between csrsi and csrci
    wfi
    csrsi   mstatus, 8
    csrci   mstatus, 8
    j       2b
3:  la      t0, line
    lw      t1, 0(t0)
    li      a0, 5
    li      t2, 1
    bne     t1, t2, 9f
    la      t0, status
    lw      t1, 0(t0)
    li      a0, 3
    li      t2, 2
    bne     t1, t2, 9f
    li      t2, 3               # three transfers, each waited for
    bne     s1, t2, next
    la      t0, dma_dst         # compare dma_len bytes, word by word
    lw      t0, 0(t0)
    la      t1, dma_len
    lw      t1, 0(t1)
    srli    t1, t1, 2
    li      t2, 0
    li      t3, 0xA5000000
4:  beq     t2, t1, 5f
    lw      t4, 0(t0)
    add     t5, t3, t2
    li      a0, 4
    bne     t4, t5, 9f
    addi    t0, t0, 4
    addi    t2, t2, 1
    j       4b
5:  li      a0, 0
9:  ret

    .align 2
    .globl trap
trap:
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    li      t0, INTC_BASE
    lw      t1, 8(t0)           # claim
    sw      t1, 8(t0)           # complete
    la      t0, line
    sw      t1, 0(t0)
    li      t0, DMA_BASE
    lw      t1, 16(t0)          # status
    la      t0, status
    sw      t1, 0(t0)
    la      t0, done
    lw      t1, 0(t0)
    addi    t1, t1, 1
    sw      t1, 0(t0)
    lw      t0, 0(sp)
    lw      t1, 4(sp)
    addi    sp, sp, 16
    mret

    .data
    .align 2
    .globl dma_dst, dma_len, dma_spin
dma_dst: .word 0x80200000
dma_len: .word 256
dma_spin: .word 300
    .bss
    .align 2
done:   .space 4
line:   .space 4
status: .space 4
