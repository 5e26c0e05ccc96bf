/* exit7.c — returns 7 from main: the run's exit status must be 7. */
int main(void)
{
    return 7;
}
