/*
 * slab.c — slab caches, and the firmware half of their constructors.
 *
 * A constructor is firmware code, so it cannot travel to the host: the SDK
 * keeps (handle, ctor) pairs in a small table and runs the ctor when
 * KH_CACHE_ALLOC answers aux = 1 ("this object is fresh"). As in SLUB, an
 * object returns to its cache in its constructed state and is not
 * re-constructed on its next allocation.
 *
 * Invariants:
 *  1. A handle appears at most once in ctor_table; a free slot has handle 0.
 *  2. Only caches created with a ctor are listed.
 */
#include "hcall.h"

struct ctor_slot {
    uint32_t handle;
    void (*ctor)(void *);
};

static struct ctor_slot ctor_table[KALLOC_MAX_CTORS];

static struct ctor_slot *ctor_slot_find(uint32_t handle)
{
    for (int i = 0; i < KALLOC_MAX_CTORS; i++)
        if (ctor_table[i].handle == handle)
            return &ctor_table[i];
    return NULL;
}

static void (*ctor_lookup(uint32_t handle))(void *)
{
    struct ctor_slot *slot = handle ? ctor_slot_find(handle) : NULL;

    return slot ? slot->ctor : NULL;
}

KH_API struct kmem_cache *kmem_cache_create(const char *name, size_t size, size_t align,
                                            unsigned long flags, void (*ctor)(void *))
{
    uint32_t handle = KH_CALL5(KH_CACHE_CREATE, name, size, align, flags, ctor).result;
    unsigned long irqflags;
    struct ctor_slot *slot;

    if (!handle || !ctor)
        return (struct kmem_cache *)(uintptr_t)handle;
    local_irq_save(irqflags);
    slot = ctor_slot_find(0);
    if (slot) {
        slot->handle = handle;
        slot->ctor = ctor;
    }
    local_irq_restore(irqflags);
    if (!slot)
        kalloc_panic("kmem_cache_create: more caches with a constructor than "
                     "KALLOC_MAX_CTORS; raise it in kalloc.h");
    return (struct kmem_cache *)(uintptr_t)handle;
}

KH_API void *kmem_cache_alloc(struct kmem_cache *cache, gfp_t gfp)
{
    struct kh_ret r = KH_CALL2(KH_CACHE_ALLOC, cache, gfp);
    void (*ctor)(void *);

    if (r.result && r.aux == 1) {
        ctor = ctor_lookup(KH_A(cache));
        if (ctor)
            ctor((void *)(uintptr_t)r.result);
    }
    return (void *)(uintptr_t)r.result;
}

KH_API void kmem_cache_free(struct kmem_cache *cache, void *obj)
{
    KH_CALL2(KH_CACHE_FREE, cache, obj);
}

KH_API int kmem_cache_shrink(struct kmem_cache *cache)
{
    return (int)KH_CALL1(KH_CACHE_SHRINK, cache).result;
}

KH_API void kmem_cache_destroy(struct kmem_cache *cache)
{
    unsigned long irqflags;
    struct ctor_slot *slot;

    KH_CALL1(KH_CACHE_DESTROY, cache);
    if (!cache)
        return;
    local_irq_save(irqflags);
    slot = ctor_slot_find(KH_A(cache));
    if (slot)
        *slot = (struct ctor_slot){ 0, NULL };
    local_irq_restore(irqflags);
}
