-- The consumer-group store: one SQLite database per broker, by default
-- <data_dir>/groups.db, written by broker/group_store.cc. The semantics of
-- each column, and what survives a restart, are in broker/groups.md.
--
-- This file is embedded in the binary (once_embed_sql) and applied by
-- sqlite::Migrate: the text after "-- migration: N" moves the schema from
-- version N-1 to N (PRAGMA user_version). Never edit a released migration:
-- append a new one. Offsets are never NULL; every count is >= 0.

-- migration: 1

-- Registry-wide values. Keys:
--   'token_secret'  BLOB, 192 random bytes: the key of delivery-token macs
--   'boot_epoch'    INTEGER, bumped at each open; travels in every token so
--                   that a token from before a restart is never mistaken
--                   for a delivery made after it
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value ANY NOT NULL
) WITHOUT ROWID;

-- One row per group. group_id is the group's incarnation: AUTOINCREMENT
-- never hands out an id again, so a group deleted and created anew under
-- the same name refuses the old one's tokens. Enum columns hold the numbers
-- of broker/group_config.h.
CREATE TABLE groups (
  group_id           INTEGER PRIMARY KEY AUTOINCREMENT,
  topic              TEXT    NOT NULL,
  name               TEXT    NOT NULL,
  mode               INTEGER NOT NULL,  -- 1 shared, 2 ordered
  guarantee          INTEGER NOT NULL,  -- 1 at-least-once, 2 idempotent, 3 exactly-once
  ack_timeout_ms     INTEGER NOT NULL,
  max_deliveries     INTEGER NOT NULL,
  dead_letter_topic  TEXT    NOT NULL,  -- '' means '<topic>-dlq'
  prefetch           INTEGER NOT NULL,
  start_kind         INTEGER NOT NULL,  -- 1 earliest, 2 latest, 3 offset, 4 time
  start_value        INTEGER NOT NULL,  -- the offset or the time in ms
  session_timeout_ms INTEGER NOT NULL,
  backoff_base_ms    INTEGER NOT NULL,
  backoff_max_ms     INTEGER NOT NULL,
  created_ms         INTEGER NOT NULL,
  UNIQUE (topic, name)
);

-- Per group and partition (disk topics only; memory topics keep their
-- group state in RAM). done_floor: every offset below it is done for the
-- group (acked, dead-lettered, committed past, or before the start);
-- in ordered mode it is the committed offset. dispatched: every offset
-- below it was delivered at least once (written lazily, so it may lag).
CREATE TABLE partitions (
  group_id      INTEGER NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
  partition_id  INTEGER NOT NULL,
  done_floor    INTEGER NOT NULL,
  dispatched    INTEGER NOT NULL,
  acked         INTEGER NOT NULL DEFAULT 0,  -- messages acked since creation
  dead_lettered INTEGER NOT NULL DEFAULT 0,  -- messages moved to the dead-letter topic
  PRIMARY KEY (group_id, partition_id)
) WITHOUT ROWID;

-- Shared mode: offsets at or above done_floor that are done, as half-open
-- ranges [begin_offset, end_offset). Rows may touch or overlap (each ack
-- batch adds its own runs); readers merge them. Rows wholly below
-- done_floor are deleted when the floor passes them.
CREATE TABLE acked_ranges (
  group_id     INTEGER NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
  partition_id INTEGER NOT NULL,
  begin_offset INTEGER NOT NULL,
  end_offset   INTEGER NOT NULL,
  PRIMARY KEY (group_id, partition_id, begin_offset)
) WITHOUT ROWID;

-- How many times a not-yet-done message was delivered, for messages
-- delivered more than once (a message below `dispatched` without a row
-- was delivered once). Written lazily with the group's next durable write.
CREATE TABLE delivery_counts (
  group_id     INTEGER NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
  partition_id INTEGER NOT NULL,
  msg_offset   INTEGER NOT NULL,
  deliveries   INTEGER NOT NULL,
  PRIMARY KEY (group_id, partition_id, msg_offset)
) WITHOUT ROWID;

-- migration: 2

-- How an exactly-once group's coordinator batches (broker/group_config.h,
-- GroupConfig::txn_batch_max / txn_linger_ms). NULL: the setting is unset,
-- and the service's default applies at each delivery (onced
-- --txn-batch-max / --txn-linger-ms), so groups of version 1 keep the
-- behaviour they had. Set only for exactly-once groups; checked at load.
ALTER TABLE groups ADD COLUMN txn_batch_max INTEGER DEFAULT NULL;  -- 1..10000
ALTER TABLE groups ADD COLUMN txn_linger_ms INTEGER DEFAULT NULL;  -- 0..1000
