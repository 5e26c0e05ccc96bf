/* picolibc_heap.c — the heap picolibc's own malloc (nano-malloc, libc.a) grows
 * with sbrk, for the bench firmware built without the SDK's malloc
 * (firmware/Makefile SDK_MALLOC=0): HEAP_BYTES taken from the kernel's page
 * allocator at the first sbrk (one hypercall), then handed out in order.
 * Defining sbrk here keeps picolibc's (which wants __heap_start/__heap_end
 * from the linker script) out of the link. Not part of the SDK.
 */
#include <stddef.h>
#include <stdint.h>

#include <kalloc.h>

#define HEAP_BYTES (2u << 20)

static char *heap, *brk;

void *sbrk(ptrdiff_t incr)
{
    char *old;

    if (!heap) {
        heap = alloc_pages_exact(HEAP_BYTES, GFP_KERNEL);
        if (!heap)
            return (void *)-1;
        brk = heap;
    }
    if (incr > heap + HEAP_BYTES - brk || incr < heap - brk)
        return (void *)-1;
    old = brk;
    brk += incr;
    return old;
}
