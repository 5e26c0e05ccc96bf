/* fastpath.S — the fast halves of malloc, free, kmalloc and kfree (issue 14, part 3).
 *
 * Not part of the SDK and not linked into any ELF: a separate blob, linked for a
 * window outside every board's RAM (0xF402_0000, code at +0x1000), that the machine
 * maps and copies in only under `--fastpath on` (kalloc_machine/fastpath.py). The
 * machine then patches the first 8 bytes of each wrapper with `auipc t0; jalr x0`
 * to the entry here; the fallback of each entry is a trampoline the machine writes
 * into the window: the wrapper's 8 displaced bytes, then a jump to wrapper + 8.
 *
 * Registers at entry are the wrapper's: a0 (size or pointer), a1 (gfp for kmalloc),
 * ra, s0, sp of the caller. The blob writes only t0-t6 and a2-a7 (caller-saved and
 * not arguments of these four functions) before it either returns (served) or jumps
 * to the fallback with a0, a1, ra, s0, sp untouched, and leaves no object's address in
 * them but a0's (the end-of-run leak scan counts registers as roots). It never writes a CSR, never
 * reads or writes the user's object, and touches only the window and (reads) the
 * stack bank for the frame-pointer walk, bounded by the header's limits.
 *
 * A served call: pop (alloc) or push (free) the class's magazine, set or clear the
 * object's byte in the per-granule map, append one 128-byte record to the ring:
 *   w0 = op (0 alloc, 1 free) | api << 1 (0 kmalloc/kfree, 1 malloc/free)
 *        | class << 4 | size << 8 | frames << 24        w1 = object
 *   w2 = gfp, a kmalloc's only; w3 unused (words the blob does not write keep what they
 *        held: Python reads w2 for kmalloc records alone, never w3)
 *   w4.. = return addresses: ra, then each frame's [fp-4] (the slow path's walk)
 * and commits it by storing the ring head last. Python replays the ring.
 */
    .equ W,          0xF4020000
    .equ H_ALLOWED,  0x04   /* 1: the machine says task context (depth 0) */
    .equ H_HEAD,     0x08   /* records in the ring */
    .equ H_CAP,      0x0C   /* ring capacity (records) */
    .equ H_STLO,     0x10   /* stack bank base + 8 */
    .equ H_STHI,     0x14   /* stack bank end */
    .equ H_LIMIT,    0x18   /* magazine capacity */
    .equ H_MMAX,     0x1C   /* malloc's largest served size */
    .equ H_BADGFP,   0x20   /* kmalloc gfp bits the fast path never serves */
    .equ H_NCLASS,   0x24
    .equ H_LO0,      0x28
    .equ H_HI0,      0x2C
    .equ H_MAP0,     0x30   /* map byte of H_LO0 (absolute) */
    .equ H_LO1,      0x34
    .equ H_HI1,      0x38
    .equ H_MAP1,     0x3C
    .equ H_MAGS,     0x40   /* 16 words: absolute address of each class's magazine */
    .equ H_TRAMP,    0x80   /* 4 words: fallbacks of malloc, free, kmalloc, kfree */
    .equ CLASSTAB,   0x100  /* (size - 1) >> 3 -> class, for sizes 1..2048 */
    .equ RING,       0x2000
    .equ KMAX,       2048

    .option norvc
    .text
    .globl _start
_start:
    j malloc_fast
    j free_fast
    j kmalloc_fast
    j kfree_fast

/* map lookup: object \obj -> its map byte's address in \out, or jump to \slow
 * (misaligned, outside both heap ranges). Clobbers t6. */
.macro MAPADDR obj, out, slow
    andi t6, \obj, 7
    bnez t6, \slow
    lw t6, H_LO0(t0)
    bltu \obj, t6, 1f
    lw \out, H_HI0(t0)
    bgeu \obj, \out, 1f
    sub \out, \obj, t6
    srli \out, \out, 3
    lw t6, H_MAP0(t0)
    add \out, \out, t6
    j 2f
1:  lw t6, H_LO1(t0)
    bltu \obj, t6, \slow
    lw \out, H_HI1(t0)
    bgeu \obj, \out, \slow
    sub \out, \obj, t6
    srli \out, \out, 3
    lw t6, H_MAP1(t0)
    add \out, \out, t6
2:
.endm

/* ring room -> a2 = head, a3 = record, or jump to \slow. Clobbers t6. */
.macro RECORD slow
    lw a2, H_HEAD(t0)
    lw t6, H_CAP(t0)
    bgeu a2, t6, \slow
    slli a3, a2, 7
    li t6, RING
    add a3, a3, t6
    add a3, a3, t0
.endm

/* The frame-pointer walk of bridge/callsite.py chain(ra, fp = sp at entry), into the
 * record's w4..; a4 = frames << 24 (the caller ors it into w0). A frame whose words lie below sp + 8 (where the wrapper's
 * own frame would be, which the slow path reads) goes to \slow. Only the first frame is
 * checked against the bank's low end and sp + 8: each later one lies above it (a frame
 * pointer that does not grow ends the walk), so it passes both. Clobbers t1, t2, t6, a4, a7. */
.macro WALK slow
    sw ra, 16(a3)
    addi a4, a3, 20          /* next slot */
    andi t6, sp, 3
    bnez t6, 8f
    lw t1, H_STLO(t0)
    lw t2, H_STHI(t0)
    bltu sp, t1, 8f
    bgtu sp, t2, 8f
    mv a7, s0
    beqz a7, 8f
    andi t6, a7, 3
    bnez t6, 8f
    bltu a7, t1, 8f
    bgtu a7, t2, 8f
    addi t6, sp, 8
    bltu a7, t6, \slow
    addi t1, a3, 80          /* the end of 16 frames */
7:  lw t6, -4(a7)
    beqz t6, 8f
    sw t6, 0(a4)
    addi a4, a4, 4
    lw t6, -8(a7)
    beqz t6, 8f
    bleu t6, a7, 8f          /* frames grow up the stack */
    mv a7, t6
    bgeu a4, t1, 8f          /* 16 frames */
    andi t6, a7, 3
    bnez t6, 8f
    bleu a7, t2, 7b
8:  sub a4, a4, a3
    addi a4, a4, -16         /* 4 * frames */
    slli a4, a4, 22
.endm

kmalloc_fast:
    li t3, 0
    lui t0, %hi(W)
    lw t1, H_BADGFP(t0)
    and t1, t1, a1
    bnez t1, slow_alloc
    addi t2, a0, -1
    li t1, KMAX
    bgeu t2, t1, slow_alloc
    j alloc_common

malloc_fast:
    li t3, 2
    lui t0, %hi(W)
    lw t1, H_MMAX(t0)
    addi t2, a0, -1
    bgeu t2, t1, slow_alloc

/* t0 window, t2 size - 1, t3 api << 1 (a1 kmalloc's gfp) */
alloc_common:
    lw t1, H_ALLOWED(t0)
    beqz t1, slow_alloc
    csrr t1, mstatus
    andi t1, t1, 8           /* MIE: interrupts on */
    beqz t1, slow_alloc
    srli t1, t2, 3
    add t1, t1, t0
    lbu t1, CLASSTAB(t1)     /* class */
    slli t4, t1, 2
    add t4, t4, t0
    lw t4, H_MAGS(t4)        /* its magazine: count, then entries */
    lw t5, 0(t4)
    beqz t5, slow_alloc
    lw t6, H_LIMIT(t0)
    bgtu t5, t6, slow_alloc
    slli t6, t5, 2
    add t6, t6, t4
    lw a6, 0(t6)             /* the top: entry count - 1 */
    MAPADDR a6, a5, slow_alloc
    RECORD slow_alloc
    slli t6, t1, 4
    or t6, t6, t3            /* class << 4 | api << 1 */
    addi t1, t1, 1
    slli t2, t3, 3
    or t3, t1, t2            /* t3: the map byte, class + 1 | api << 4 */
    slli t2, a0, 8
    or a0, t6, t2            /* a0: w0 but its frames (the result from here on) */
    sw a6, 4(a3)
    andi t2, a0, 2
    bnez t2, 1f
    sw a1, 8(a3)             /* kmalloc's gfp */
1:
    WALK slow_alloc_a0
    or a0, a0, a4
    sw a0, 0(a3)
    sb t3, 0(a5)
    addi t5, t5, -1
    sw t5, 0(t4)
    addi a2, a2, 1
    sw a2, H_HEAD(t0)
    mv a0, a6
    li a6, 0                 /* no second copy of the pointer: the leak scan reads registers */
    ret

slow_alloc_a0:               /* a0 and t3 were reused: give the api and the size back (from w0) */
    andi t3, a0, 2
    srli a0, a0, 8
slow_alloc:
    bnez t3, 1f
    lw t0, H_TRAMP+8(t0)
    jr t0
1:  lw t0, H_TRAMP+0(t0)
    jr t0

kfree_fast:
    li t3, 0
    lui t0, %hi(W)
    j free_common

free_fast:
    li t3, 1
    lui t0, %hi(W)

/* t0 window, t3 api, a0 the object */
free_common:
    lw t1, H_ALLOWED(t0)
    beqz t1, slow_free
    MAPADDR a0, a5, slow_free
    lbu t1, 0(a5)
    beqz t1, slow_free       /* not a live object of a fast class */
    srli t2, t1, 4
    bne t2, t3, slow_free    /* the other API's object: the slow path reports it */
    andi t1, t1, 15
    addi t1, t1, -1
    lw t2, H_NCLASS(t0)
    bgeu t1, t2, slow_free
    slli t4, t1, 2
    add t4, t4, t0
    lw t4, H_MAGS(t4)
    lw t5, 0(t4)
    lw t6, H_LIMIT(t0)
    bgeu t5, t6, slow_free   /* full: the slow path flushes */
    RECORD slow_free
    slli a6, t1, 4
    slli t2, t3, 1
    or a6, a6, t2
    ori a6, a6, 1            /* a6: w0 but its frames */
    sw a0, 4(a3)
    WALK slow_free
    or a6, a6, a4
    sw a6, 0(a3)
    sb zero, 0(a5)
    slli t6, t5, 2
    add t6, t6, t4
    sw a0, 4(t6)
    addi t5, t5, 1
    sw t5, 0(t4)
    addi a2, a2, 1
    sw a2, H_HEAD(t0)
    ret

slow_free:
    bnez t3, 1f
    lw t0, H_TRAMP+12(t0)
    jr t0
1:  lw t0, H_TRAMP+4(t0)
    jr t0
