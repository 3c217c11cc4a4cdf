// The consumer-group store's SQLite schema: the text of schema/groups.sql,
// embedded at build time (see once_embed_sql in schema/CMakeLists.txt).
// Split it with sqlite::ParseMigrations and apply it with sqlite::Migrate.
// The tables are documented in the .sql file and in broker/groups.md.
#ifndef ONCE_SCHEMA_GROUPS_SQL_H_
#define ONCE_SCHEMA_GROUPS_SQL_H_

#include "absl/strings/string_view.h"

namespace once::schema {

absl::string_view GroupsSql();

}  // namespace once::schema

#endif  // ONCE_SCHEMA_GROUPS_SQL_H_
