/* Device addresses of every shipped board (emulator/memlayout.py). */
#define UART_BASE     0x10000000
#define CLINT_BASE    0x02000000
#define MTIMECMP      (CLINT_BASE + 0x4000)
#define MTIME         (CLINT_BASE + 0xBFF8)
#define INTC_BASE     0x0C000000
#define DMA_BASE      0x10001000
#define DMA_BUF       (DMA_BASE + 0x800)
#define DOORBELL_BASE 0x11000000
