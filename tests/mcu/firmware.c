/* firmware.c - an exported cnn.h model on an emulated Cortex-M4 (make mcu).

   Runs NAME_predict (the file build/export wrote, compiled beside this one)
   on each image of images.c (written by tests/mcu/host.c) and prints, through
   semihosting, one line an image and the accuracy:

       image 0 label 31 class 31: 2f0c6a1b 3d4c2a10 ...   (each probability's bits)
       ...
       accuracy: 83.67% (251 of 300)

   The bits let the host compare without printing a float (newlib-nano's
   printf has no %f unless asked, and decimal would round). Returning from
   main ends the program through semihosting's exit, whose status qemu
   passes on as its own.

   Built by tests/mcu/run.sh for qemu-system-arm -M mps2-an386 with
   -DMCU_NAME=model_f (or model_q) and -I the folder that holds images.h:
   hard-float (-mfloat-abi=hard -mfpu=fpv4-sp-d16), linked with the
   Cortex-M4 startup file and linker script from Debian's gcc-arm-none-eabi
   examples and newlib's rdimon.specs. See tests/mcu/README.md. */
#include <stdio.h>
#include <string.h>

#include "images.h" /* MCU_COUNT, MCU_INPUT_SIZE, MCU_CLASSES, from host.c */

#ifndef MCU_NAME
#error "build with -DMCU_NAME=the exported model's name (model_f, model_q)"
#endif
#define MCU_CAT_(a, b) a##b
#define MCU_CAT(a, b) MCU_CAT_(a, b)
#define MCU_PREDICT MCU_CAT(MCU_NAME, _predict)

int MCU_PREDICT(const float *input, float *probabilities);

extern const float mcu_images[MCU_COUNT][MCU_INPUT_SIZE];
extern const unsigned char mcu_labels[MCU_COUNT];

void SystemInit(void);
void HardFault_Handler(void);

/* A semihosting call: operation in r0, its argument block in r1, then the
   breakpoint that qemu (-semihosting-config enable=on) answers. */
static int mcu_semihost(int operation, const void *argument)
{
    register int r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* Called by the startup file's Reset_Handler after it copies .data and
   before newlib's _start: before any C library code or constructor, and so
   before the first floating-point instruction, wherever that is (newlib is
   built for the hard-float ABI too; nobody can promise it touches no FPU
   register before main). The Cortex-M4 leaves reset with its FPU off (CPACR
   gives coprocessors 10 and 11, the FPU, no access), and a VFP instruction
   would then raise a NOCP usage fault, escalated to a hard fault. CMSIS's
   SystemInit does the same under __FPU_USED. Integer code only here. */
void SystemInit(void)
{
    volatile unsigned long *cpacr = (volatile unsigned long *)0xE000ED88UL;
    *cpacr |= 0xFUL << 20;                          /* CP10 and CP11: full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");   /* in force for what follows */
}

/* Any fault (all escalate to this one, as none is enabled on its own): say
   so and stop qemu with a failure, rather than spin until the timeout. */
void HardFault_Handler(void)
{
    static const char message[] = "firmware: hard fault (the FPU used while off, a bad address, a return to 0)\n";
    const unsigned long exit_block[2] = {0x20023UL /* ADP_Stopped_RunTimeErrorUnknown */, 1};
    mcu_semihost(0x04 /* SYS_WRITE0 */, message);
    mcu_semihost(0x18 /* SYS_EXIT */, exit_block);
    for (;;) {}
}

static unsigned long mcu_bits(float x)
{
    unsigned int u;
    memcpy(&u, &x, sizeof u);
    return (unsigned long)u;
}

int main(void)
{
    static float probabilities[MCU_CLASSES];
    int i, k, correct = 0, basis_points;
    for (i = 0; i < MCU_COUNT; i++) {
        int predicted = MCU_PREDICT(mcu_images[i], probabilities);
        if (predicted < 0 || predicted >= MCU_CLASSES) {
            printf("image %d: class %d is out of range\n", i, predicted);
            return 1;
        }
        correct += predicted == mcu_labels[i];
        printf("image %d label %d class %d:", i, mcu_labels[i], predicted);
        for (k = 0; k < MCU_CLASSES; k++) printf(" %08lx", mcu_bits(probabilities[k]));
        printf("\n");
    }
    basis_points = (int)((20000L * correct + MCU_COUNT) / (2L * MCU_COUNT)); /* rounded */
    printf("accuracy: %d.%02d%% (%d of %d)\n", basis_points / 100, basis_points % 100, correct, MCU_COUNT);
    return 0;
}
