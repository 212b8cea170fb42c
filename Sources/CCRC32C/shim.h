#ifndef LICENSED_CCRC32C_SHIM_H
#define LICENSED_CCRC32C_SHIM_H
/* CRC-32C with the processor's own instruction: SSE 4.2's crc32 on x86-64, the CRC extension's
   crc32c on 64-bit Arm. Eight bytes per instruction against slicing-by-8's eight table lookups:
   recovery checksums every snapshot and log record it reads (hundreds of MB at a million leases).
   licensed_crc32c_hardware() says whether this processor has it; the Swift side keeps the
   portable tables for the others. The state passed and returned is the raw register (the caller
   inverts before and after), so the two implementations continue each other. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>

static inline int licensed_crc32c_hardware(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    return (ecx & bit_SSE4_2) != 0;
}

__attribute__((target("sse4.2")))
static inline uint32_t licensed_crc32c_update(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t state = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        state = __builtin_ia32_crc32di(state, word);
        p += 8;
        length -= 8;
    }
    uint32_t small = (uint32_t)state;
    while (length > 0) {
        small = __builtin_ia32_crc32qi(small, *p);
        p++;
        length--;
    }
    return small;
}

#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif

static inline int licensed_crc32c_hardware(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }

__attribute__((target("crc")))
static inline uint32_t licensed_crc32c_update(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        crc = __builtin_arm_crc32cd(crc, word);
        p += 8;
        length -= 8;
    }
    while (length > 0) {
        crc = __builtin_arm_crc32cb(crc, *p);
        p++;
        length--;
    }
    return crc;
}

#else
static inline int licensed_crc32c_hardware(void) { return 0; }
static inline uint32_t licensed_crc32c_update(uint32_t crc, const void *data, size_t length) {
    (void)data;
    (void)length;
    return crc;
}
#endif
#endif
