/* teach_irq_sleep.c — teach_irq.c (the list detached correctly) with a handler that
 * allocates with GFP_KERNEL, which may sleep: invalid-context. */
#define TEACH_IRQ_FIXED 1
#define TEACH_IRQ_SLEEP 1
#include "teach_irq.c"
