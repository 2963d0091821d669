// Declarations only (CFuzzerDriver.h); libFuzzer provides the definitions.
