/*
 * libc_malloc.c — the C library's allocation family, through kalloc.
 *
 * These definitions replace picolibc's nano-malloc: the SDK is linked whole
 * (--whole-archive) ahead of libc.a, so by the time the linker looks in libc
 * every malloc-family symbol is already defined and none of picolibc's
 * nano-malloc objects (with their hidden chunk headers and sbrk heap) is ever
 * pulled in. That includes the rarely used members (mallinfo, mallopt,
 * malloc_stats, cfree, pvalloc): any one of picolibc's would drag its malloc
 * back in. strdup/strndup live here too, because picolibc's are built without
 * frame pointers and would hide their caller from the allocation-site walk.
 *
 * Policy details (zero sizes, realloc(p, 0), the largest size) are the
 * allocator's: see docs/allocator.md. Here: errno = ENOMEM when a non-zero
 * request fails, as POSIX asks.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "hcall.h"

static void *nomem_if_null(void *p, size_t size)
{
    if (!p && size)
        errno = ENOMEM;
    return p;
}

KH_API void *malloc(size_t size)
{
    return nomem_if_null((void *)(uintptr_t)KH_CALL1(KH_MALLOC, size).result, size);
}

KH_API void free(void *ptr)
{
    KH_CALL1(KH_FREE, ptr);
}

KH_API void cfree(void *ptr)
{
    KH_CALL1(KH_FREE, ptr);
}

KH_API void *calloc(size_t n, size_t size)
{
    return nomem_if_null((void *)(uintptr_t)KH_CALL2(KH_CALLOC, n, size).result, n && size);
}

KH_API void *realloc(void *ptr, size_t size)
{
    return nomem_if_null((void *)(uintptr_t)KH_CALL2(KH_REALLOC, ptr, size).result, size);
}

/* OpenBSD's: realloc(ptr, n * size) with the multiplication checked. */
KH_API void *reallocarray(void *ptr, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    return nomem_if_null((void *)(uintptr_t)KH_CALL2(KH_REALLOC, ptr, n * size).result, n * size);
}

/* FreeBSD's: like realloc, but frees ptr when it fails. */
KH_API void *reallocf(void *ptr, size_t size)
{
    void *p = (void *)(uintptr_t)KH_CALL2(KH_REALLOC, ptr, size).result;

    if (!p && size) {
        KH_CALL1(KH_FREE, ptr);
        errno = ENOMEM;
    }
    return p;
}

/* C17 (DR 460): size need not be a multiple of align; a bad align gives NULL. */
KH_API void *aligned_alloc(size_t align, size_t size)
{
    return nomem_if_null((void *)(uintptr_t)KH_CALL2(KH_ALIGNED_ALLOC, align, size).result, size);
}

KH_API void *memalign(size_t align, size_t size)
{
    return nomem_if_null((void *)(uintptr_t)KH_CALL2(KH_ALIGNED_ALLOC, align, size).result, size);
}

/* POSIX: align must be a power of two and a multiple of sizeof(void *);
 * errors are returned, not put in errno, and *out is untouched on failure. */
KH_API int posix_memalign(void **out, size_t align, size_t size)
{
    void *p;

    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    p = (void *)(uintptr_t)KH_CALL2(KH_ALIGNED_ALLOC, align, size).result;
    if (!p && size)
        return ENOMEM;
    *out = p;
    return 0;
}

KH_API void *valloc(size_t size)
{
    return nomem_if_null((void *)(uintptr_t)KH_CALL2(KH_ALIGNED_ALLOC, PAGE_SIZE, size).result,
                         size);
}

/* valloc with the size rounded up to whole pages. */
KH_API void *pvalloc(size_t size)
{
    size_t rounded = (size + PAGE_SIZE - 1) & ~(size_t)(PAGE_SIZE - 1);

    if (rounded < size) {
        errno = ENOMEM;
        return NULL;
    }
    return nomem_if_null((void *)(uintptr_t)KH_CALL2(KH_ALIGNED_ALLOC, PAGE_SIZE, rounded).result,
                         rounded);
}

KH_API size_t malloc_usable_size(void *ptr)
{
    return KH_CALL1(KH_MALLOC_USABLE_SIZE, ptr).result;
}

/* The statistics live in kalloc; this prints them on the UART. */
KH_API void malloc_stats(void)
{
    KH_CALL1(KH_STATS_DUMP, KH_STATS_ALL);
}

/* No tunables: kalloc's policy is fixed per run (see kalloc run --help). */
int mallopt(int param, int value)
{
    (void)param;
    (void)value;
    return 0;
}

/* kalloc keeps the real numbers; kalloc_stats_dump() shows them. */
struct mallinfo mallinfo(void)
{
    return (struct mallinfo){ 0 };
}

KH_API char *strdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = (char *)(uintptr_t)KH_CALL1(KH_MALLOC, len).result;

    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    return memcpy(p, s, len);
}

KH_API char *strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = (char *)(uintptr_t)KH_CALL1(KH_MALLOC, len + 1).result;

    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}
