// apps/reservoird/main.cpp: reservoird, the resident pool server: `reservoird config.ini`.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "server/daemon.hpp"

int main(int argc, char** argv) {
  std::string config;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::printf(
          "usage: reservoird CONFIG.ini\n  Serves PostgreSQL clients from pools of server "
          "connections (docs/reservoird.md).\n  SIGHUP reloads, SIGTERM/SIGINT drains "
          "and exits.\n");
      return 0;
    }
    if (a == "-V" || a == "--version") {
      std::printf("reservoird 0.1.0\n");
      return 0;
    }
    if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "reservoird: unknown option %s (try --help)\n", a.c_str());
      return 2;
    }
    config = a;
  }
  if (config.empty()) {
    std::fprintf(stderr, "usage: reservoird CONFIG.ini\n");
    return 2;
  }
  try {
    reservoir::server::Daemon daemon(config);
    return daemon.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reservoird: %s\n", e.what());
    return 1;
  }
}
