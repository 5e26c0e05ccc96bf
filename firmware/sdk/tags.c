/*
 * tags.c — allocation tags (issue 18): kalloc_tag_push / kalloc_tag_pop.
 * The machine keeps one tag stack per context (task, each interrupt depth).
 */
#include "hcall.h"

KH_API int kalloc_tag_push(const char *name)
{
    return (int)KH_CALL1(KH_TAG_PUSH, name).result;
}

KH_API int kalloc_tag_pop(void)
{
    return (int)KH_CALL0(KH_TAG_POP).result;
}
