/*
 * irq_race.c — a broken variant of implicit.c for `kalloc lab`'s tests and
 * the teaching guide: mm_malloc and mm_free update the heap with interrupts
 * on, so a timer handler that allocates in the middle of one (kalloc lab
 * --irq) gets a block being handed out (overlap) or walks half-updated tags
 * (a crash).
 */
#define LAB_BUG_IRQ_RACE 1
#include "implicit.c"
