// CRC32C (Castagnoli), the checksum of every byte Once rests on disk.
#ifndef ONCE_SCHEMA_CRC32C_H_
#define ONCE_SCHEMA_CRC32C_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace once::crc32c {

// Returns the CRC32C of data[0, n) continuing from `crc` (the CRC of the
// bytes before it; 0 to start). Uses SSE4.2 when the CPU has it, Boost.CRC
// otherwise; both give identical results. Thread-safe.
uint32_t Extend(uint32_t crc, const char* data, size_t n);

inline uint32_t Value(const char* data, size_t n) { return Extend(0, data, n); }
inline uint32_t Value(absl::string_view data) { return Extend(0, data.data(), data.size()); }

}  // namespace once::crc32c

#endif  // ONCE_SCHEMA_CRC32C_H_
