// Version of the logquant headers. Kept in step with project(VERSION) in CMakeLists.txt.
#pragma once

#define LOGQUANT_VERSION_MAJOR 0
#define LOGQUANT_VERSION_MINOR 1
#define LOGQUANT_VERSION_PATCH 0

namespace logquant {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace logquant
