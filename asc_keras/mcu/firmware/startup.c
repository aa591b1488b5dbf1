// Bare-metal start for QEMU's Cortex-M boards: the vector table, the reset handler (copy
// .data, zero .bss, turn on the FPU / MVE, run constructors and main) and the two
// semihosting calls the firmware uses (write a string, exit).
#include <stdint.h>

extern uint32_t __stack_top, __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern int main(void);
extern void __libc_init_array(void);
void SysTick_Handler(void);

static int semihost(int operation, void* argument) {
  register int r0 __asm("r0") = operation;
  register void* r1 __asm("r1") = argument;
  __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void semihost_write(const char* text) { semihost(0x04, (void*)text); }  // SYS_WRITE0

void semihost_exit(int status) {
  // SYS_EXIT_EXTENDED: ADP_Stopped_ApplicationExit with the exit status.
  uint32_t block[2] = {0x20026u, (uint32_t)status};
  semihost(0x20, block);
  for (;;) {
  }
}

void Default_Handler(void) {
  semihost_write("ERROR unexpected exception\n");
  semihost_exit(3);
}

void HardFault_Handler(void) {
  semihost_write("ERROR hard fault\n");
  semihost_exit(3);
}

void Reset_Handler(void) {
  uint32_t* source = &__data_load;
  for (uint32_t* target = &__data_start; target < &__data_end;) *target++ = *source++;
  for (uint32_t* target = &__bss_start; target < &__bss_end;) *target++ = 0;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
  // CPACR: full access to CP10 and CP11 (the FPU, and MVE on Armv8.1-M).
  *(volatile uint32_t*)0xE000ED88u |= 0xFu << 20;
  __asm volatile("dsb\n isb" ::: "memory");
#endif
  __libc_init_array();
  semihost_exit(main());
}

// Unused handlers default to Default_Handler; 16 system vectors plus 16 interrupts.
__attribute__((section(".vectors"), used)) void (*const vectors[32])(void) = {
    (void (*)(void))&__stack_top,
    Reset_Handler,
    Default_Handler,  // NMI
    HardFault_Handler,
    Default_Handler,  // MemManage
    Default_Handler,  // BusFault
    Default_Handler,  // UsageFault
    Default_Handler,  // SecureFault
    0, 0, 0,
    Default_Handler,  // SVCall
    Default_Handler,  // DebugMonitor
    0,
    Default_Handler,  // PendSV
    SysTick_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
};

// newlib's stubs that snprintf may reach; nothing here allocates at run time.
void* _sbrk(int increment) {
  (void)increment;
  semihost_write("ERROR heap allocation\n");
  semihost_exit(4);
  return 0;
}

// Linked without the C runtime's start files (-nostartfiles): what they would define.
void* __dso_handle = 0;
void _init(void) {}
void _fini(void) {}
