/*
 * overrun.c — a broken variant of implicit.c for `kalloc lab`'s tests and the
 * teaching guide: block sizes leave no room for the header and footer: the next block's header lands in the payload (corrupted).
 */
#define LAB_BUG_OVERRUN 1
#include "implicit.c"
