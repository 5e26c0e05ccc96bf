/*
 * pages.c — the page allocator's face: power-of-two blocks and exact runs.
 */
#include "hcall.h"

KH_API void *alloc_pages(gfp_t gfp, unsigned int order)
{
    return (void *)(uintptr_t)KH_CALL2(KH_ALLOC_PAGES, gfp, order).result;
}

KH_API void free_pages(void *addr, unsigned int order)
{
    KH_CALL2(KH_FREE_PAGES, addr, order);
}

KH_API void *alloc_pages_exact(size_t size, gfp_t gfp)
{
    return (void *)(uintptr_t)KH_CALL2(KH_ALLOC_PAGES_EXACT, size, gfp).result;
}

KH_API void free_pages_exact(void *addr, size_t size)
{
    KH_CALL2(KH_FREE_PAGES_EXACT, addr, size);
}
