/*
 * driver.c — the lab driver firmware of `kalloc lab` (docs/teaching.md).
 *
 * main returns at once: the lab (kalloc_machine/tools/lab.py) boots the
 * firmware, stops at main, and then calls lab_init once and one lab_* entry
 * per trace operation through the test harness (Target.call), as `kalloc
 * replay --firmware` drives its shim. Each entry is a plain call into the
 * student's code; everything the lab checks it checks from Python, in guest
 * memory, after the call returns (alignment, bounds, overlap, contents).
 *
 * mm_calloc and mm_check are optional: weak references, 0 when the student's
 * file does not define them (lab_has() tells the lab which exist).
 */
#include <stddef.h>
#include <stdint.h>

#include "lab.h"

#define ENTRY __attribute__((noinline, used))

extern void *mm_calloc(size_t nmemb, size_t size) __attribute__((weak));
extern int mm_check(void) __attribute__((weak));

int lab_heap_reserve(void);

/* The heap region first (-2 when the page allocator refuses it), then mm_init. */
ENTRY int lab_init(void)
{
    if (lab_heap_reserve() != 0)
        return -2;
    return mm_init();
}

ENTRY void *lab_malloc(size_t size) { return mm_malloc(size); }
ENTRY void lab_free(void *ptr) { mm_free(ptr); }
ENTRY void *lab_realloc(void *ptr, size_t size) { return mm_realloc(ptr, size); }
ENTRY void *lab_calloc(size_t nmemb, size_t size) { return mm_calloc(nmemb, size); }
ENTRY int lab_check(void) { return mm_check(); }

/* Bit 0: mm_calloc defined; bit 1: mm_check defined. */
ENTRY unsigned lab_has(void)
{
    return (mm_calloc ? 1u : 0u) | (mm_check ? 2u : 0u);
}

/* Referenced from main, so --gc-sections keeps every entry. */
void *const lab_entries[] = {
    (void *)lab_init, (void *)lab_malloc, (void *)lab_free, (void *)lab_realloc,
    (void *)lab_calloc, (void *)lab_check, (void *)lab_has,
};

int main(void)
{
    return *(void *const volatile *)&lab_entries[0] == NULL;
}
