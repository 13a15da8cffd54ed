// Hamming kernels for HammingIsa::kAvx2; see hamming_impl.inc. Compiler flags
// for this file are set in core/CMakeLists.txt.
#define HAMDB_ISA_NS isa_avx2
#define HAMDB_ISA_ENUM HammingIsa::kAvx2
#include "core/hamming_impl.inc"
