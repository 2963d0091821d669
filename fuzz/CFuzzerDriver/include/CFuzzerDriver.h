// libFuzzer's entry for programs that have their own main (LLVM 13+). SwiftPM names an
// executable's entry point `<target>_main`, so the fuzz binary starts the driver itself.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
