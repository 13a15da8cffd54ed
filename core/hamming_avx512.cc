// Hamming kernels for HammingIsa::kAvx512 (AVX-512 F/BW/VL with VPOPCNTDQ);
// see hamming_impl.inc. Compiler flags for this file are set in
// core/CMakeLists.txt.
#define HAMDB_ISA_NS isa_avx512
#define HAMDB_ISA_ENUM HammingIsa::kAvx512
#include "core/hamming_impl.inc"
