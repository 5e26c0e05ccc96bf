/*
 * tags_vmalloc.c — vmalloc areas carry the tag pushed when they were created (issue 18).
 *   untagged: a 5000-byte vmalloc area before any tag;
 *   "textures": two areas of 300000 and 200000 bytes, and nested inside, "scratch": one of
 *               10000 bytes (physically scattered pages, each area one object of its
 *               requested size, not its pages);
 *   the scratch area is freed while "net" is pushed: it leaves "scratch", not "net";
 *   "net" also takes a kmalloc object, so the table mixes both kinds of memory.
 * Marks 1 (load) and 2 (teardown). Everything is freed before exit. With --budgets
 * textures = "400KiB", the second textures area takes the tag over its budget.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kalloc.h"

int main(void)
{
    void *plain = vmalloc(5000);
    void *tex[2], *scratch, *packet;

    kalloc_mark(1);
    kalloc_tag_push("textures");
    tex[0] = vmalloc(300000);
    kalloc_tag_push("scratch");
    scratch = vmalloc(10000);
    kalloc_tag_pop();
    tex[1] = vmalloc(200000);
    kalloc_tag_pop();

    kalloc_mark(2);
    kalloc_tag_push("net");
    packet = kmalloc(1500, GFP_KERNEL);
    vfree(scratch); /* created under "scratch": freed from it, whatever is pushed now */
    kalloc_tag_pop();
    printf("tags_vmalloc: %p %p %p %p\n", plain, tex[0], tex[1], packet);
    vfree(tex[0]);
    vfree(tex[1]);
    kfree(packet);
    vfree(plain);
    return 0;
}
