// src/server/admin.hpp: reservoird's admin console, the virtual database `reservoir` (alias
// `pgbouncer`): SHOW POOLS, STATS, CLIENTS, SERVERS, CONFIG, DATABASES, CCLASS, VERSION; PAUSE,
// RESUME, RELOAD, SHUTDOWN. PgBouncer's column names where the same thing exists.
//
// Thread safety: callable from any session's thread.
#pragma once

#include <string>
#include <string_view>

namespace reservoir::server {

class Daemon;

// True for the console's database names.
bool is_admin_database(std::string_view database) noexcept;

// Runs one console command (a simple Query's text) and appends its answer to out: RowDescription,
// DataRows and CommandComplete, or an ErrorResponse; no ReadyForQuery. may_control: the user is
// in admin_users (stats_users may only SHOW).
void run_admin_command(Daemon& daemon, std::string_view sql, bool may_control, std::string& out);

}  // namespace reservoir::server
