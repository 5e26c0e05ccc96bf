/*
 * realloc_overread.c — a broken variant of implicit.c for `kalloc lab`'s
 * tests and the teaching guide: mm_realloc copies the new size, not the old
 * payload's, with a loop of its own: it reads bytes nothing wrote (an
 * uninit-read hint of kalloc lab --uninit; the contents stay right).
 */
#define LAB_BUG_REALLOC_OVERREAD 1
#include "implicit.c"
