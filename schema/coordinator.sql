-- The 2PC coordinator's store: one SQLite database per data directory,
-- <data_dir>/coordinator.db, written by coordinator/txn_store.cc (onced)
-- and read or resolved by the operator tool once-recover (only while onced
-- is stopped: both take <data_dir>/LOCK).
--
-- Presumed abort (DESIGN.md §2): nothing is written before the decision.
-- A txns row is the durable COMMIT record of a transaction (the commit
-- point), written together with all of its txn_messages rows in one SQLite
-- transaction (a group commit writes many in one); a txn without a row was
-- aborted or never existed. Rows reach state 4 (done) when the participant
-- answered DONE and the batch was deleted in the broker, and are then
-- deleted in batches. The audit table is never trimmed.
--
-- Journal: WAL; PRAGMA synchronous=FULL by default (NORMAL when configured).
--
-- This file is embedded in the binary (once_embed_sql, function
-- once::schema::CoordinatorSql) and applied by sqlite::Migrate: the text
-- after "-- migration: N" moves the schema from version N-1 to N (PRAGMA
-- user_version). Never edit a released migration: append a new one. A
-- database at a version newer than the last one here is refused.

-- migration: 1

-- Store-wide values. Keys:
--   'epoch'  INTEGER >= 0, the coordinator epoch: incremented durably at
--            every start of onced (BumpEpoch) before any txn id
--            "<epoch>.<sequence>" is handed out, so ids never repeat
--            across restarts and frames of an older epoch are refused.
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value ANY NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('epoch', 0);

-- One row per decided (committed) transaction.
--   txn            "<epoch>.<sequence>", unique across restarts
--   topic, grp     the exactly-once group the batch was leased from
--   participant    the participant id of the session that voted YES
--   epoch          the coordinator epoch that decided it (<= meta.epoch)
--   generation     the participant connection's generation at the vote
--   state          coordinator/txn_state.h numbers: 3 committed, 4 done
--                  (only these two are ever stored)
--   message_count  the number of txn_messages rows (a completeness check)
--   created_ms     PREPARE sent; decided_ms: the COMMIT record written;
--   done_ms        DONE handled (0 while not done); all Unix ms
--   attempts       COMMIT frames sent so far (informational, written lazily)
--   reason         why it was decided so (empty, or an operator's reason)
--   broker_deleted 1 once the batch is known deleted (acked) in the
--                  broker's group; recovery acks again when 0 (idempotent)
CREATE TABLE txns (
  txn            TEXT    PRIMARY KEY,
  topic          TEXT    NOT NULL,
  grp            TEXT    NOT NULL,
  participant    TEXT    NOT NULL,
  epoch          INTEGER NOT NULL CHECK (epoch >= 0),
  generation     INTEGER NOT NULL CHECK (generation >= 0),
  state          INTEGER NOT NULL CHECK (state IN (3, 4)),
  message_count  INTEGER NOT NULL CHECK (message_count >= 0),
  created_ms     INTEGER NOT NULL,
  decided_ms     INTEGER NOT NULL,
  done_ms        INTEGER NOT NULL DEFAULT 0,
  attempts       INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  reason         TEXT    NOT NULL DEFAULT '',
  broker_deleted INTEGER NOT NULL DEFAULT 0 CHECK (broker_deleted IN (0, 1))
) WITHOUT ROWID;
-- LoadUnfinished and List scan by state in decision order.
CREATE INDEX txns_by_state ON txns (state, decided_ms);

-- The batch B of each txn: one row per message, seq 0..message_count-1 in
-- the order of the PREPARE frame; (partition_id, msg_offset) is the
-- message's place in the topic's log. Deleted with its txn.
CREATE TABLE txn_messages (
  txn          TEXT    NOT NULL REFERENCES txns (txn) ON DELETE CASCADE,
  seq          INTEGER NOT NULL CHECK (seq >= 0),
  partition_id INTEGER NOT NULL CHECK (partition_id >= 0),
  msg_offset   INTEGER NOT NULL CHECK (msg_offset >= 0),
  PRIMARY KEY (txn, seq)
) WITHOUT ROWID;

-- Operators' and recovery's actions, forever: forced commits and aborts
-- (with the reason the operator gave), offline resolves. `txn` may name a
-- txn that never had a row (an audited abort of an unknown txn).
--   at_ms   Unix ms; action: e.g. force_commit, force_abort, resolve;
--   actor   who did it: once-recover, http, onced
CREATE TABLE audit (
  id     INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms  INTEGER NOT NULL,
  txn    TEXT    NOT NULL,
  action TEXT    NOT NULL,
  reason TEXT    NOT NULL,
  actor  TEXT    NOT NULL
);
CREATE INDEX audit_by_txn ON audit (txn, id);

-- migration: 2

-- The batch B of a txn as runs of consecutive offsets: one row per run
-- instead of one per message (a batch leased from one partition is one
-- row, not a thousand). seq 0.. in the order of the PREPARE frame; a run
-- covers msg_offset first_offset .. first_offset + count - 1 of
-- partition_id, in that order. Every txn decided by this version has its
-- batch here; txn_messages keeps the batches of txns decided by version 1
-- (a txn has rows in one of the two tables, never both). The runs' counts
-- add up to txns.message_count. Deleted with its txn.
CREATE TABLE txn_runs (
  txn          TEXT    NOT NULL REFERENCES txns (txn) ON DELETE CASCADE,
  seq          INTEGER NOT NULL CHECK (seq >= 0),
  partition_id INTEGER NOT NULL CHECK (partition_id >= 0),
  first_offset INTEGER NOT NULL CHECK (first_offset >= 0),
  count        INTEGER NOT NULL CHECK (count >= 1),
  PRIMARY KEY (txn, seq)
) WITHOUT ROWID;
