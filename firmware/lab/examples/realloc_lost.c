/*
 * realloc_lost.c — a broken variant of implicit.c for `kalloc lab`'s tests and the
 * teaching guide: mm_realloc frees the old block before copying it: the free's boundary tag overwrites the data (realloc-lost-data).
 */
#define LAB_BUG_REALLOC_LOST 1
#include "implicit.c"
