/*
 * vmalloc.c — virtual memory without demand paging: vmalloc / vfree, vmap /
 * vunmap, and the free-page count that shows every page is committed at once.
 * vzalloc makes its own hypercall (VMALLOC with __GFP_ZERO), like kzalloc.
 */
#include "hcall.h"

KH_API void *vmalloc(size_t size)
{
    return (void *)(uintptr_t)KH_CALL2(KH_VMALLOC, size, GFP_KERNEL).result;
}

KH_API void *vzalloc(size_t size)
{
    return (void *)(uintptr_t)KH_CALL2(KH_VMALLOC, size, GFP_KERNEL | __GFP_ZERO).result;
}

KH_API void *__vmalloc(size_t size, gfp_t gfp)
{
    return (void *)(uintptr_t)KH_CALL2(KH_VMALLOC, size, gfp).result;
}

KH_API void vfree(const void *addr)
{
    KH_CALL1(KH_VFREE, addr);
}

KH_API void *vmap(void *const *pages, unsigned int count)
{
    return (void *)(uintptr_t)KH_CALL2(KH_VMAP, pages, count).result;
}

KH_API void vunmap(const void *addr)
{
    KH_CALL1(KH_VUNMAP, addr);
}

KH_API unsigned long nr_free_pages(void)
{
    return KH_CALL0(KH_NR_FREE_PAGES).result;
}
