// The x86-64 feature level the CPU hot loops run at: each is compiled for x86-64-v4 (AVX-512),
// x86-64-v3 (AVX2, FMA) and baseline x86-64, and one build is chosen at run time by the features
// the CPU has (never by CPU model), or lower where GWKCUDA_CPU_LEVEL asks for it (baseline,
// x86-64-v3, x86-64-v4: to compare the builds, or to rule one out). The builds give identical
// results: the extension is compiled with -ffp-contract=off, so no build fuses a multiply and an
// add that another rounds twice.
//
// A hot loop is a struct with a static GWK_LOOP_BODY function template `run<Level>` (the level
// it is built for: a body may pick its vector width by it); Clones<Body>::run(args...) calls the
// build of the chosen level. (The body must be inlined into each build: code called
// from a function of another target is not compiled for the caller's, and GCC inlines across
// targets only what is always_inline.)
#pragma once

#include <utility>

namespace gwk {
namespace cpu {

enum Level : int { kBaseline = 0, kV3 = 1, kV4 = 2 };

// The level in use: the highest the CPU supports, capped by GWKCUDA_CPU_LEVEL (read once; a value
// that is none of the three names raises on first use).
Level level();
const char* level_name(Level level);

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GWK_TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define GWK_TARGET_V3 __attribute__((target("arch=x86-64-v3")))
#define GWK_LOOP_BODY __attribute__((always_inline)) inline
#define GWK_CPU_LEVELS 1
#else
#define GWK_TARGET_V4
#define GWK_TARGET_V3
#define GWK_LOOP_BODY inline
#define GWK_CPU_LEVELS 0
#endif

template <typename Body>
struct Clones {
  template <typename... A>
  GWK_TARGET_V4 static auto v4(A... a) {
    return Body::template run<kV4>(a...);
  }
  template <typename... A>
  GWK_TARGET_V3 static auto v3(A... a) {
    return Body::template run<kV3>(a...);
  }
  template <typename... A>
  static auto baseline(A... a) {
    return Body::template run<kBaseline>(a...);
  }
  template <typename... A>
  static auto run(A... a) {
    switch (level()) {  // the same branch every call: predicted
      case kV4: return v4(a...);
      case kV3: return v3(a...);
      default: return baseline(a...);
    }
  }
};

}  // namespace cpu
}  // namespace gwk
