// Runs a .tflite model in TFLite Micro on a bare-metal Cortex-M under QEMU and reports, over
// semihosting, each input's raw outputs and the SysTick ticks of every op; asc_keras.mcu
// turns the ticks into instructions (QEMU runs with -icount shift=0: one instruction per ns).
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "firmware_config.h"  // generated: ASC_ADD_OPS, ASC_OP_COUNT, ASC_ARENA_BYTES
#include "inputs.h"
#include "model.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include CMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE

extern "C" void semihost_write(const char* text);
extern "C" void semihost_exit(int status);

namespace {

volatile uint32_t systick_wraps = 0;

// SysTick counts down from 2^24 - 1 at the core clock; the wraps extend it to 64 bits. A
// wrap whose interrupt is still pending is counted here.
uint64_t Ticks() {
  uint32_t wraps, value, pending;
  do {
    wraps = systick_wraps;
    value = SysTick->VAL;
    pending = SCB->ICSR & SCB_ICSR_PENDSTSET_Msk;
  } while (wraps != systick_wraps);
  if (pending && value > 0x800000u) ++wraps;
  return (static_cast<uint64_t>(wraps) << 24) + (0xFFFFFFu - value);
}

void Print(const char* format, ...) __attribute__((format(printf, 1, 2)));
void Print(const char* format, ...) {
  char line[256];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof(line), format, args);
  va_end(args);
  semihost_write(line);
}

void DebugLog(const char* text) { semihost_write(text); }

// Decimal text of a 64-bit count (newlib-nano's printf has no %llu).
const char* U64(uint64_t value, char (&text)[21]) {
  char* end = text + sizeof(text) - 1;
  *end = 0;
  do {
    *--end = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value);
  return end;
}

// Records each op's ticks during one Invoke (the interpreter opens one event per op).
class TickProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    if (count_ >= kMaxEvents) return kMaxEvents;
    tags_[count_] = tag;
    start_[count_] = Ticks();
    return count_++;
  }
  void EndEvent(uint32_t handle) override {
    if (handle < kMaxEvents) ticks_[handle] = Ticks() - start_[handle];
  }
  void Reset() { count_ = 0; }
  void Report() const {
    for (uint32_t i = 0; i < count_; ++i) {
      char text[21];
      Print("OP %lu %s %s\n", static_cast<unsigned long>(i), tags_[i], U64(ticks_[i], text));
    }
  }

 private:
  static constexpr uint32_t kMaxEvents = 512;
  const char* tags_[kMaxEvents];
  uint64_t start_[kMaxEvents];
  uint64_t ticks_[kMaxEvents];
  uint32_t count_ = 0;
};

alignas(16) uint8_t arena[ASC_ARENA_BYTES];
TickProfiler profiler;

// Ticks of a loop of known length: two instructions (subs, bne) per iteration.
uint64_t CalibrationTicks(uint32_t iterations) {
  uint64_t start = Ticks();
  __asm volatile(
      "1: subs %0, %0, #1\n"
      "   bne 1b\n"
      : "+r"(iterations)
      :
      : "cc");
  return Ticks() - start;
}

}  // namespace

extern "C" void SysTick_Handler(void) { systick_wraps = systick_wraps + 1; }

int main(void) {
  RegisterDebugLogCallback(DebugLog);
  SysTick->LOAD = 0xFFFFFFu;
  SysTick->VAL = 0;
  SysTick->CTRL = SysTick_CTRL_CLKSOURCE_Msk | SysTick_CTRL_TICKINT_Msk |
                  SysTick_CTRL_ENABLE_Msk;
  while (SysTick->VAL == 0) {
  }  // the first reload (from the cleared value) is not a wrap
  constexpr uint32_t kIterations = 4000000;
  char text[21];
  Print("CALIBRATION %lu %s\n", static_cast<unsigned long>(2 * kIterations),
        U64(CalibrationTicks(kIterations), text));

  const tflite::Model* model = tflite::GetModel(asc_model);
  tflite::MicroMutableOpResolver<ASC_OP_COUNT> resolver;
  ASC_ADD_OPS(resolver);
  tflite::MicroInterpreter interpreter(model, resolver, arena, sizeof(arena), nullptr,
                                       &profiler);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    Print("ERROR AllocateTensors failed (arena %u bytes)\n", ASC_ARENA_BYTES);
    semihost_exit(1);
  }
  Print("ARENA %lu\n", static_cast<unsigned long>(interpreter.arena_used_bytes()));
  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (input->bytes != asc_input_bytes) {
    Print("ERROR input tensor has %u bytes, inputs.cc %u\n", input->bytes, asc_input_bytes);
    semihost_exit(1);
  }
  for (unsigned int n = 0; n < asc_input_count; ++n) {
    memcpy(input->data.raw, asc_inputs + n * asc_input_bytes, asc_input_bytes);
    profiler.Reset();
    uint64_t start = Ticks();
    if (interpreter.Invoke() != kTfLiteOk) {
      Print("ERROR Invoke failed on input %u\n", n);
      semihost_exit(1);
    }
    uint64_t ticks = Ticks() - start;
    Print("INPUT %u %s\n", n, U64(ticks, text));
    if (n == 0) profiler.Report();
    static char hex[2 * 1024 + 1];
    size_t bytes = output->bytes < 1024 ? output->bytes : 1024;
    for (size_t i = 0; i < bytes; ++i) {
      snprintf(hex + 2 * i, 3, "%02x", output->data.uint8[i]);
    }
    Print("OUTPUT %u ", n);
    semihost_write(hex);
    semihost_write("\n");
  }
  Print("DONE\n");
  semihost_exit(0);
  return 0;
}
