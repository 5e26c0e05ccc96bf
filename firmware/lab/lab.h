/*
 * lab.h — the interface of `kalloc lab` (docs/teaching.md, "Lab: write your
 * own allocator"): what a student's allocator may call, and what it writes.
 *
 * The student writes, in one C file:
 *
 *   int   mm_init(void);                      0 on success, -1 on failure
 *   void *mm_malloc(size_t size);             an aligned payload of >= size bytes
 *   void  mm_free(void *ptr);                 ptr came from mm_malloc/mm_realloc
 *   void *mm_realloc(void *ptr, size_t size); contents kept up to min(old, size)
 *   void *mm_calloc(size_t n, size_t size);   optional: zeroed n * size bytes
 *   int   mm_check(void);                     optional: nonzero = heap consistent
 *
 * and builds it into the lab driver firmware (KASAN=1 instruments the
 * student's file for `kalloc lab --sanitize=kasan`):
 *
 *   make -C "$(kalloc sdk)" LAB=1 APP=/abs/student.c OUT=/abs/student.elf
 *   make -C "$(kalloc sdk)" LAB=1 KASAN=1 APP=/abs/student.c OUT=/abs/student-kasan.elf
 *
 * The heap is one region of memory committed by kalloc's page allocator (no
 * demand paging): mem_sbrk moves its break up; the committed pages below the
 * break are what the lab's utilization score divides by. The student's code
 * must not use malloc/kmalloc for its heap: only mem_sbrk.
 *
 * `kalloc lab --irq` calls mm_malloc and mm_free from a timer interrupt while
 * the trace runs: guard every heap update with local_irq_save(flags) /
 * local_irq_restore(flags) from <kalloc.h>. The handout is docs/lab.md.
 */
#ifndef KALLOC_LAB_H
#define KALLOC_LAB_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Extends the heap by incr bytes (incr >= 0) and returns the old break, the
 * first byte of the new space; (void *)-1 when the heap cannot grow that far
 * (its maximum is `kalloc lab --heap-max`) or for a negative incr. */
void *mem_sbrk(int incr);
void *mem_heap_lo(void);        /* the first byte of the heap */
void *mem_heap_hi(void);        /* the last byte of the heap (lo - 1 when empty) */
size_t mem_heapsize(void);      /* bytes between lo and the break */
size_t mem_pagesize(void);      /* 4096 */

/* What the student writes (mm_calloc and mm_check are optional). */
int mm_init(void);
void *mm_malloc(size_t size);
void mm_free(void *ptr);
void *mm_realloc(void *ptr, size_t size);
void *mm_calloc(size_t nmemb, size_t size);
int mm_check(void);

#ifdef __cplusplus
}
#endif

#endif /* KALLOC_LAB_H */
