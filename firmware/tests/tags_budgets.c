/*
 * tags_budgets.c — allocation tags end to end (issue 18).
 *   task:    "audio" 3 x 256 KiB (kmalloc-family pages), nested "voice" 100 KiB
 *            (malloc) inside it, then a slab cache created and used under "net",
 *            and one more of its objects allocated with no tag pushed (still "net");
 *   handler: the timer handler pushes "irq" and allocates 4 KiB with GFP_ATOMIC
 *            while the task holds "audio": the handler's object is "irq", not "audio";
 *   untagged: 8 KiB before any tag.
 * Phases are marked (kalloc_mark 1, 2, 3). Frees the voice buffer and one audio
 * buffer before exit; the rest is freed too (no leaks). With --budgets audio = 512KiB
 * the third audio buffer takes "audio" over its budget.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kalloc.h"

static void *volatile from_irq;
static volatile int fired;

static void on_timer(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    kalloc_tag_push("irq");
    from_irq = kmalloc(4096, GFP_ATOMIC);
    kalloc_tag_pop();
    fired = 1;
}

int main(void)
{
    void *untagged = malloc(8192);
    void *audio[3], *voice, *objs[5];
    struct kmem_cache *cache;
    int i;

    kalloc_mark(1);
    kalloc_tag_push("audio");
    for (i = 0; i < 3; i++)
        audio[i] = kmalloc(256 * 1024, GFP_KERNEL);
    kalloc_tag_push("voice");
    voice = malloc(100 * 1024);
    kalloc_tag_pop();
    request_irq(KALLOC_IRQ_TIMER, on_timer, NULL);
    kalloc_timer_set(1000);
    kalloc_wait_until(fired);
    kalloc_tag_pop();

    kalloc_mark(2);
    kalloc_tag_push("net");
    cache = kmem_cache_create("packets", 1500, 0, 0, NULL);
    for (i = 0; i < 4; i++)
        objs[i] = kmem_cache_alloc(cache, GFP_KERNEL);
    kalloc_tag_pop();
    objs[4] = kmem_cache_alloc(cache, GFP_KERNEL); /* untagged context: the cache's "net" */

    kalloc_mark(3);
    free(voice);
    kfree(audio[0]);
    printf("tags: depth after pops %d\n", kalloc_tag_push("end") - 1);
    kalloc_tag_pop();
    for (i = 0; i < 5; i++)
        kmem_cache_free(cache, objs[i]);
    kmem_cache_destroy(cache);
    kfree(audio[1]);
    kfree(audio[2]);
    kfree(from_irq);
    free(untagged);
    return 0;
}
