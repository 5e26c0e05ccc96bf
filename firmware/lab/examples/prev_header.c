/*
 * prev_header.c — a broken variant of implicit.c for `kalloc lab`'s tests
 * and the teaching guide: mm_malloc writes a copy of a block's header a
 * double word too low, into the last bytes of the previous block's payload
 * (caught at the store under KASAN: out-of-bounds; without it, as payload-
 * access or corrupted contents).
 */
#define LAB_BUG_PREV_HEADER 1
#include "implicit.c"
