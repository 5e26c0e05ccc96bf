/* teach_irq_fixed.c — teach_irq.c with the list detached under local_irq_save(). */
#define TEACH_IRQ_FIXED 1
#include "teach_irq.c"
