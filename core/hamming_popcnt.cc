// Hamming kernels for HammingIsa::kPopcnt; see hamming_impl.inc. Compiler flags
// for this file are set in core/CMakeLists.txt.
#define HAMDB_ISA_NS isa_popcnt
#define HAMDB_ISA_ENUM HammingIsa::kPopcnt
#include "core/hamming_impl.inc"
