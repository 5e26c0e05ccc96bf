/* A call chain with frame pointers that ends in an illegal instruction. */
int depth_reached;

__attribute__((noinline)) static void inner(int x)
{
    depth_reached = x;
    __asm__ volatile("unimp");  /* line 7: c.unimp, an illegal instruction */
}

__attribute__((noinline)) void outer(int x)
{
    inner(x + 1);
}

int main(void)
{
    outer(1);
    return 0;
}
