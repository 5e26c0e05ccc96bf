/* replay_shim.c — the firmware behind `kalloc replay --firmware`.
 *
 * Each function is one C library call, made by firmware through the SDK's
 * hypercall stubs exactly as an application makes it; the replay
 * (emulator/fwreplay.py) calls them one trace operation at a time through the
 * test harness, so the trace exercises the whole path: stub, argument block,
 * bridge, heap policy, allocator. main returns at once: the harness stops there.
 */
#include <stddef.h>
#include <stdlib.h>

#define SHIM __attribute__((noinline, used))

SHIM void *replay_malloc(size_t n) { return malloc(n); }
SHIM void *replay_calloc(size_t n, size_t size) { return calloc(n, size); }
SHIM void *replay_realloc(void *p, size_t n) { return realloc(p, n); }
SHIM void *replay_aligned_alloc(size_t align, size_t n) { return aligned_alloc(align, n); }
SHIM void replay_free(void *p) { free(p); }

/* Referenced from main, so the linker's --gc-sections keeps every shim. */
void *const replay_shims[] = {
    (void *)replay_malloc, (void *)replay_calloc, (void *)replay_realloc,
    (void *)replay_aligned_alloc, (void *)replay_free,
};

int main(void)
{
    return *(void *const volatile *)&replay_shims[0] == NULL;
}
