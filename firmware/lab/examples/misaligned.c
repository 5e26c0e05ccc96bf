/*
 * misaligned.c — a broken variant of implicit.c for `kalloc lab`'s tests and the
 * teaching guide: mm_init forgets the padding word: every payload is 4 bytes off an 8-byte boundary (misaligned).
 */
#define LAB_BUG_MISALIGNED 1
#include "implicit.c"
