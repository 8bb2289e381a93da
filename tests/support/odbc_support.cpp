// tests/support/odbc_support.cpp: driver library paths, a private odbcinst configuration and
// connection strings for the ODBC integration tests.
#include "support/odbc_support.hpp"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <mutex>

#include "reservoir/driver.hpp"
#include "reservoir/dsn.hpp"
#include "support/mariadb_fixture.hpp"
#include "support/postgres_fixture.hpp"

namespace reservoir::testing {
namespace {

constexpr const char* kLibDir = "/usr/lib/x86_64-linux-gnu/odbc/";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

struct BackendInfo {
  const char* env_var;
  const char* file;
  const char* package;
  const char* odbcinst_name;
};

BackendInfo info(OdbcBackend b) {
  switch (b) {
    case OdbcBackend::sqlite:
      return {"RESERVOIR_ODBC_SQLITE_DRIVER", "libsqlite3odbc.so", "libsqliteodbc",
              "Reservoir SQLite3"};
    case OdbcBackend::postgresql:
      return {"RESERVOIR_ODBC_POSTGRESQL_DRIVER", "psqlodbcw.so", "odbc-postgresql",
              "Reservoir PostgreSQL"};
    case OdbcBackend::mariadb:
      break;
  }
  return {"RESERVOIR_ODBC_MARIADB_DRIVER", "libmaodbc.so", "odbc-mariadb", "Reservoir MariaDB"};
}

// An ODBC attribute value in braces when it holds characters that would end it.
std::string braced(std::string_view v) {
  if (v.find_first_of(";{}= ") == std::string_view::npos) return std::string(v);
  std::string out = "{";
  for (const char c : v) {
    out += c;
    if (c == '}') out += '}';
  }
  return out + "}";
}

std::mutex config_mutex;

}  // namespace

std::string odbc_driver_library(OdbcBackend backend, std::string* why) {
  const BackendInfo i = info(backend);
  std::string path = env(i.env_var);
  if (path.empty()) path = std::string(kLibDir) + i.file;
  if (!std::filesystem::exists(path)) {
    if (why != nullptr) {
      *why = "the ODBC driver " + path + " is missing (apt-get install " + i.package + ", or set " +
             i.env_var + ")";
    }
    return {};
  }
  return path;
}

const std::filesystem::path& odbc_config_dir() {
  static const std::filesystem::path dir = [] {
    std::string templ = (std::filesystem::temp_directory_path() / "reservoir-odbc.XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    const std::filesystem::path d(templ);
    std::ofstream inst(d / "odbcinst.ini");
    for (const auto b : {OdbcBackend::sqlite, OdbcBackend::postgresql, OdbcBackend::mariadb}) {
      const std::string lib = odbc_driver_library(b);
      if (lib.empty()) continue;
      inst << "[" << info(b).odbcinst_name << "]\nDriver=" << lib << "\n\n";
    }
    inst.close();
    std::ofstream(d / "odbc.ini").close();
    // Read by unixODBC at every connect: set before the first one, never changed afterwards.
    ::setenv("ODBCSYSINI", d.c_str(), 1);
    ::setenv("ODBCINI", (d / "odbc.ini").c_str(), 1);
    return d;
  }();
  // Removed when the test program exits (ctest runs every test in a process of its own).
  static const struct Remover {
    const std::filesystem::path& dir;
    ~Remover() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } remover{dir};
  return dir;
}

void add_odbc_data_source(std::string_view name, std::string_view attributes_lines) {
  const std::lock_guard lock(config_mutex);
  std::ofstream ini(odbc_config_dir() / "odbc.ini", std::ios::app);
  ini << "[" << name << "]\n" << attributes_lines << "\n\n";
}

bool odbc_driver_built() { return find_driver("odbc") != nullptr; }

std::string odbc_sqlite_dsn(const std::filesystem::path& file, std::string* why,
                            std::string_view extra) {
  odbc_config_dir();
  const std::string lib = odbc_driver_library(OdbcBackend::sqlite, why);
  if (lib.empty()) return {};
  std::string dsn = "odbc:DRIVER=" + lib + ";Database=" + braced(file.string()) + ";Timeout=5000";
  if (!extra.empty()) dsn += ";" + std::string(extra);
  return dsn;
}

std::string odbc_postgres_dsn(const PostgresServer& server, std::string* why,
                              std::string_view extra, std::string_view user,
                              std::string_view password, std::string_view database) {
  odbc_config_dir();
  const std::string lib = odbc_driver_library(OdbcBackend::postgresql, why);
  if (lib.empty()) return {};
  std::string dsn = "odbc:DRIVER=" + lib + ";Server=" + server.host +
                    ";Port=" + std::to_string(server.port) +
                    ";Database=" + braced(database.empty() ? server.database : database) +
                    ";UID=" + braced(user.empty() ? server.user : user) +
                    ";PWD=" + braced(password.empty() ? server.password : password) +
                    ";SSLmode=disable;BoolsAsChar=0";
  if (!extra.empty()) dsn += ";" + std::string(extra);
  return dsn;
}

std::string odbc_mariadb_dsn(const MariaDbServer& server, std::string* why, std::string_view extra,
                             std::string_view user, std::string_view password) {
  odbc_config_dir();
  const std::string lib = odbc_driver_library(OdbcBackend::mariadb, why);
  if (lib.empty()) return {};
  std::string out =
      "odbc:DRIVER=" + lib + ";SERVER=" + server.host + ";PORT=" + std::to_string(server.port) +
      ";DATABASE=" + braced(server.database) + ";UID=" + braced(user.empty() ? server.user : user) +
      ";PWD=" + braced(password.empty() ? server.password : password) + ";CHARSET=utf8mb4";
  if (!extra.empty()) out += ";" + std::string(extra);
  return out;
}

}  // namespace reservoir::testing
