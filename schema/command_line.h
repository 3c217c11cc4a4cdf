// Lets every Once binary take flags spelled with dashes (--data-dir), as its
// documentation writes them, although Abseil's flag names use underscores.
#ifndef ONCE_SCHEMA_COMMAND_LINE_H_
#define ONCE_SCHEMA_COMMAND_LINE_H_

#include <cstring>

namespace once {

// Rewrites, in place, the name part of each "--some-flag[=value]" argument
// to "--some_flag[=value]". Stops at a bare "--" (what follows is
// positional) and leaves values and positional arguments alone. Call before
// absl::ParseCommandLine.
inline void NormalizeFlagDashes(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (std::strcmp(arg, "--") == 0) return;
    if (arg[0] != '-') continue;
    char* p = arg + 1;
    if (*p == '-') ++p;
    for (; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
}

}  // namespace once

#endif  // ONCE_SCHEMA_COMMAND_LINE_H_
