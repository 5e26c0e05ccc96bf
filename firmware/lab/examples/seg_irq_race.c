/*
 * seg_irq_race.c — a broken variant of segregated.c for `kalloc lab`'s tests
 * and the teaching guide: the list updates run with interrupts on, so a timer
 * handler that allocates in the middle of one (kalloc lab --irq) unlinks a
 * block twice or takes the block being handed out.
 */
#define LAB_BUG_IRQ_RACE 1
#include "segregated.c"
