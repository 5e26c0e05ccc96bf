/*
 * kmalloc.c — the kmalloc family. Each wrapper makes its own hypercall (kzalloc
 * is KH_KMALLOC with __GFP_ZERO, not a call to kmalloc) so the block's ra is
 * the caller's site without a frame walk.
 */
#include "hcall.h"

KH_API void *kmalloc(size_t size, gfp_t gfp)
{
    return (void *)(uintptr_t)KH_CALL2(KH_KMALLOC, size, gfp).result;
}

KH_API void *kzalloc(size_t size, gfp_t gfp)
{
    return (void *)(uintptr_t)KH_CALL2(KH_KMALLOC, size, gfp | __GFP_ZERO).result;
}

KH_API void *kcalloc(size_t n, size_t size, gfp_t gfp)
{
    return (void *)(uintptr_t)KH_CALL3(KH_KCALLOC, n, size, gfp).result;
}

KH_API void *krealloc(const void *ptr, size_t size, gfp_t gfp)
{
    return (void *)(uintptr_t)KH_CALL3(KH_KREALLOC, ptr, size, gfp).result;
}

KH_API void kfree(const void *ptr)
{
    KH_CALL1(KH_KFREE, ptr);
}

KH_API size_t ksize(const void *ptr)
{
    return KH_CALL1(KH_KSIZE, ptr).result;
}
