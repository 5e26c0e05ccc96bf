/*
 * debug.c — hypercalls that observe rather than allocate: the leak-report
 * exclusion, statistics dumps and trace markers.
 */
#include "hcall.h"

KH_API void kmemleak_not_leak(const void *ptr)
{
    KH_CALL1(KH_NOT_LEAK, ptr);
}

KH_API void kalloc_stats_dump(unsigned int what)
{
    KH_CALL1(KH_STATS_DUMP, what);
}

KH_API void kalloc_mark(unsigned int id)
{
    KH_CALL1(KH_MARK, id);
}
