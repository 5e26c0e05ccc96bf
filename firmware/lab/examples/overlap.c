/*
 * overlap.c — a broken variant of implicit.c for `kalloc lab`'s tests and the
 * teaching guide: a block that is not split is never marked allocated: the next mm_malloc hands it out again (overlap).
 */
#define LAB_BUG_OVERLAP 1
#include "implicit.c"
