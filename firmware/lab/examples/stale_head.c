/*
 * stale_head.c — a broken variant of segregated.c for `kalloc lab`'s tests
 * and the teaching guide: unlinking a list's first block forgets to move the
 * list's head, so the block, once allocated, is found free again (overlap).
 */
#define LAB_BUG_STALE_HEAD 1
#include "segregated.c"
