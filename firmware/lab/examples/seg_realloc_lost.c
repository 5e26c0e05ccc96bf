/*
 * seg_realloc_lost.c — a broken variant of segregated.c for `kalloc lab`'s
 * tests and the teaching guide: mm_realloc frees the old block before copying
 * it, and mm_free stores the free list's links in the payload's first 8 bytes:
 * the copy loses them (realloc-lost-data).
 */
#define LAB_BUG_REALLOC_LOST 1
#include "segregated.c"
