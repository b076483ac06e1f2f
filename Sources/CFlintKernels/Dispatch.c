// Which instruction-set paths this CPU can run (see include/CFlintKernels.h).
#include "CFlintKernels.h"

#include <string.h>
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <cpuid.h>
#endif

// Defined by each path's file (0 when compiled for another architecture).
int flint_avx2_path_supported(void);
int flint_avx2_path_has_vnni(void);
int flint_neon_path_supported(void);
int flint_neon_path_has_dot(void);

int flint_isa_supported(int isa) {
    switch (isa) {
    case FLINT_ISA_PORTABLE: return 1;
    case FLINT_ISA_AVX2: return flint_avx2_path_supported();
    case FLINT_ISA_AVX512: return flint_int8_native_available() && flint_f32_native_available();
    case FLINT_ISA_NEON: return flint_neon_path_supported();
    default: return 0;
    }
}

int flint_isa_has_dot_product(int isa) {
    switch (isa) {
    case FLINT_ISA_AVX2: return flint_avx2_path_supported() && flint_avx2_path_has_vnni();
    case FLINT_ISA_AVX512: return flint_int8_native_available();
    case FLINT_ISA_NEON: return flint_neon_path_supported() && flint_neon_path_has_dot();
    default: return 0;
    }
}

const char *flint_cpu_name(void) {
    static char name[49];
    if (name[0]) return name;
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    unsigned int regs[12];
    if (__get_cpuid_max(0x80000000u, 0) >= 0x80000004u) {
        for (unsigned int i = 0; i < 3; i++)
            __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
        memcpy(name, regs, 48);
        name[48] = 0;
        // The brand string is padded with leading spaces on some CPUs.
        char *start = name;
        while (*start == ' ') start++;
        if (start != name) memmove(name, start, strlen(start) + 1);
        if (name[0]) return name;
    }
#endif
    strcpy(name, "unknown CPU");
    return name;
}
