#include "cpu_level.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

namespace gwk {
namespace cpu {

namespace {
Level supported() {
#if GWK_CPU_LEVELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return kV4;
  if (__builtin_cpu_supports("x86-64-v3")) return kV3;
#endif
  return kBaseline;
}

Level chosen() {
  const Level best = supported();
  const char* asked = std::getenv("GWKCUDA_CPU_LEVEL");
  if (asked == nullptr || *asked == '\0') return best;
  const std::string name(asked);
  for (Level l : {kBaseline, kV3, kV4})
    if (name == level_name(l)) return l < best ? l : best;
  TORCH_CHECK(false, "GWKCUDA_CPU_LEVEL: expected baseline, x86-64-v3 or x86-64-v4, got '", name, "'");
}
}  // namespace

Level level() {
  static const Level chosen_level = chosen();
  return chosen_level;
}

const char* level_name(Level l) {
  switch (l) {
    case kV4: return "x86-64-v4";
    case kV3: return "x86-64-v3";
    default: return "baseline";
  }
}

}  // namespace cpu
}  // namespace gwk
