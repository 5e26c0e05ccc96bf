/*
 * fastpath_corrupt.c — firmware that scribbles on the fast path's window (issue 14:
 * 0xF402_0000, mapped by the machine only under --fastpath on; docs/abi.md) while the
 * fast path runs. The machine must report it once as a clear bad-hypercall and go on
 * on the slow path, never with a traceback or a wrong object replayed.
 *
 * `mode` (poked by tests/machine/test_fastpath_corrupt.py, in .data; 0 with the fast
 * path off: the window is not mapped then):
 *   1  the ring's head jumps far past its capacity
 *   2  the top of kmalloc-32's magazine is replaced by a stack address
 *   3  the first record's frame count is garbage
 *   4  the class table changes (size 1..8 is served as another class)
 *   5  a store into the blob's code (mapped read+execute only: a CPU fault)
 *   6  an interrupt handler re-enables interrupts, sets the window's "allowed" word
 *      (the machine writes 0 there while a handler runs) and mallocs: the blob serves
 *      it, and the record reaches the machine at the handler's return, made in
 *      interrupt context: the ring is corrupt, not a task-context malloc
 */
#include <kalloc.h>
#include <stdint.h>
#include <stdlib.h>

__attribute__((section(".data"), used)) volatile uint32_t mode = 0;

#define WINDOW ((volatile uint32_t *)0xF4020000u)
#define HEAD 2                     /* header word: records in the ring */
#define MAG32 (0x200 / 4 + 2 * 33) /* kmalloc-32's magazine (class 2, --percpu-cache 32) */
#define RING0 (0x2000 / 4)         /* the first record */
#define ALLOWED 1                  /* header word: the blob may serve (machine-written) */

static void *volatile from_irq;
static volatile int fired;

static void tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    local_irq_enable();
    WINDOW[ALLOWED] = 1;
    from_irq = malloc(32);
    local_irq_disable();
    fired = 1;
}

int main(void)
{
    volatile uint64_t local = 0; /* 8-aligned: the blob hands it out (a misaligned one: the slow path) */
    void *a = malloc(32); /* the slow path: a refill, then the pop */
    void *b = malloc(32); /* the blob: a record in the ring */

    __asm__ volatile("" : : "r"(a), "r"(b) : "memory"); /* keep the calls (GCC drops pairs) */
    switch (mode) {
    case 1:
        WINDOW[HEAD] += 1000;
        break;
    case 2:
        WINDOW[MAG32 + WINDOW[MAG32]] = (uint32_t)(uintptr_t)&local;
        break;
    case 3:
        WINDOW[RING0] = (WINDOW[RING0] & 0x00ffffffu) | 0xde000000u; /* w0's top byte: its frame count */
        break;
    case 4:
        WINDOW[0x100 / 4] = 0x05050505;
        break;
    case 5:
        WINDOW[0x1000 / 4] = 0;
        break;
    case 6:
        request_irq(KALLOC_IRQ_TIMER, tick, 0);
        kalloc_timer_set(2000);
        while (!fired)
            ;
        free(from_irq);
        break;
    default:
        break;
    }
    void *c = malloc(32); /* mode 2: the scribbled object */

    __asm__ volatile("" : : "r"(c) : "memory");
    free(b);
    free(a);
    free(c == (void *)&local ? NULL : c);
    return 0;
}
