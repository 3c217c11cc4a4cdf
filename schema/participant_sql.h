// The participant journal's SQLite schema: the text of
// schema/participant.sql, embedded at build time (see once_embed_sql in
// schema/CMakeLists.txt). Split it with sqlite::ParseMigrations and apply it
// with sqlite::Migrate. The tables are documented in the .sql file.
#ifndef ONCE_SCHEMA_PARTICIPANT_SQL_H_
#define ONCE_SCHEMA_PARTICIPANT_SQL_H_

#include "absl/strings/string_view.h"

namespace once::schema {

absl::string_view ParticipantSql();

}  // namespace once::schema

#endif  // ONCE_SCHEMA_PARTICIPANT_SQL_H_
