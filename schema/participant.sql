-- The participant SDK's journal (participant/, DESIGN.md §2): the durable
-- half of the participant's two-phase commit. It lives in the consumer's
-- own SQLite database (SqliteResource), next to the consumer's tables, so
-- that applying a transaction's effects, recording its message ids and
-- marking it committed is ONE local SQLite transaction. Written by
-- participant/src/journal.cc with synchronous=FULL.
--
-- All tables are prefixed "once_" so they cannot collide with the
-- consumer's. The journal owns the file's PRAGMA user_version (sqlite::
-- Migrate): a consumer that versions its own schema must do so in a table
-- of its own.
--
-- This file is embedded in the binary (once_embed_sql) and applied by
-- sqlite::Migrate: the text after "-- migration: N" moves the schema from
-- version N-1 to N. Never edit a released migration: append a new one.

-- migration: 1

-- One row per transaction the participant voted YES on.
--   state       1 prepared (voted yes, outcome unknown: "in doubt"),
--               2 committed (effects applied, ids recorded; DONE may still
--               be owed). An aborted transaction's row is deleted.
--   epoch,
--   generation  the coordinator's epoch and the session's generation of
--               the PREPARE (informational: a re-ask uses the current ones)
--   created_ms  when it was prepared; decided_ms when committed (0 before)
-- Committed rows are kept (without their staged effects) so that a
-- re-sent COMMIT is answered DONE again; the oldest are pruned past the
-- journal's retention (participant/src/journal.h).
CREATE TABLE once_txns (
  txn        TEXT    PRIMARY KEY,
  state      INTEGER NOT NULL CHECK (state IN (1, 2)),
  topic      TEXT    NOT NULL,
  group_name TEXT    NOT NULL,
  epoch      INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  decided_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE INDEX once_txns_by_state ON once_txns (state, created_ms);

-- The staged effects of a prepared transaction, one row per message, in
-- the PREPARE's order (seq). Written by version 1 only: from version 2 on
-- a transaction's messages rest in one once_txn_staged row; rows a
-- version-1 journal left here are still read (and deleted) as before. `effects` is the effect blob of
-- participant/src/effect_codec.h (version byte, statements with bound
-- parameters, CRC32C). skipped = 1: the message id was already committed
-- when the PREPARE came, nothing was staged. Deleted when the transaction
-- commits or aborts.
CREATE TABLE once_txn_messages (
  txn        TEXT    NOT NULL REFERENCES once_txns (txn) ON DELETE CASCADE,
  seq        INTEGER NOT NULL,
  message_id TEXT    NOT NULL,
  skipped    INTEGER NOT NULL CHECK (skipped IN (0, 1)),
  effects    BLOB    NOT NULL,
  PRIMARY KEY (txn, seq)
) WITHOUT ROWID;

-- Every message id whose effects were applied: the idempotence guard
-- checked when voting and again when applying (model rule 3). txn is the
-- committing transaction, '' for an idempotent-mode (streamed) message.
CREATE TABLE once_committed_messages (
  message_id   TEXT    PRIMARY KEY,
  txn          TEXT    NOT NULL,
  committed_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- migration: 2

-- The staged messages of a prepared transaction in one row: the staged
-- blob of participant/src/staged_codec.h (version byte; per message its
-- id, the skipped flag and its effect blob; CRC32C). One INSERT at PREPARE
-- and one DELETE at COMMIT or ABORT per transaction, instead of one of
-- each per message in once_txn_messages. A rowid table (not WITHOUT
-- ROWID): the blob of a large transaction spans many pages.
CREATE TABLE once_txn_staged (
  txn    TEXT NOT NULL PRIMARY KEY REFERENCES once_txns (txn) ON DELETE CASCADE,
  staged BLOB NOT NULL
);
