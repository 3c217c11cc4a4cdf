/*
 * once.pml -- a Promela model of Once's exactly-once delivery (DESIGN.md s1-s2).
 *
 * Actors: the broker (message store, leases with delivery tokens, deletes), the
 * coordinator (2PC with presumed abort, durable decision record, epochs), one
 * session process per participant connection inside the coordinator, the
 * participants (SDK: durable journal, consumer store with the committed-id
 * guard) and an environment that injects the faults. Every protocol step is one
 * atomic transition; a transition that writes durable state does so as one
 * local transaction (SQLite / fsync) before it sends what depends on it.
 *
 * See README.md beside this file for the abstractions, the properties and the
 * bug switches. Compile-time knobs (all -D...):
 *   NMSG (1..2) messages, NP (1..2) participants, MAXT (<=7) transaction ids,
 *   K (channel capacity), FAULTS (total budget of environment events:
 *   faults and operator actions) and per-kind caps
 *   CCRASH PCRASH DISC DROP DUP LTO FABORT NOVOTE HEUR FCOMMIT,
 *   SHARED_STORE (participants share one consumer store),
 *   BUG_* (see README.md), and, to see what a bug leads to beyond the first
 *   broken invariant, NO_MONITOR (no invariant monitor) and NO_STALE_ASSERT.
 */

#ifndef NMSG
#define NMSG 2
#endif
#ifndef NP
#define NP 1
#endif
#ifndef MAXT
#define MAXT 4
#endif
#if NMSG < 1 || NMSG > 2 || NP < 1 || NP > 2 || MAXT < 1 || MAXT > 7
#error "supported: NMSG 1..2, NP 1..2, MAXT 1..7 (3-bit txn ids in a frame)"
#endif
#define NT (MAXT + 1)              /* txn ids are 1..MAXT; 0 means "none" */
#ifndef K
#define K 6                        /* capacity of each one-way channel */
#endif
#if K < 1 || K > 6
#error "supported: K 1..6"
#endif
#define NCH (2 * NP)
#define C2P(p) (p)                 /* coordinator -> participant p */
#define P2C(p) (NP + (p))          /* participant p -> coordinator */

#ifdef SHARED_STORE
#define STORE(p) 0
#define NSTORE 1
#else
#define STORE(p) (p)
#define NSTORE NP
#endif

/* ---- fault budgets ---------------------------------------------------- */
#ifndef FAULTS
#define FAULTS 3
#endif
#ifndef CCRASH
#define CCRASH 1                   /* coordinator crash + restart */
#endif
#ifndef PCRASH
#define PCRASH 1                   /* participant crash + restart */
#endif
#ifndef DISC
#define DISC 1                     /* connection dropped by the network */
#endif
#ifndef DROP
#define DROP 1                     /* message lost */
#endif
#ifndef DUP
#define DUP 1                      /* message duplicated */
#endif
#ifndef LTO
#define LTO 1                      /* lease timed out */
#endif
#ifndef FABORT
#define FABORT 1                   /* vote timeout / operator's forced abort */
#endif
#ifndef NOVOTE
#define NOVOTE 1                   /* the handler fails: participant votes NO */
#endif
#ifndef HEUR
#define HEUR 0                     /* participant operator's wrong manual commit */
#endif
#ifndef FCOMMIT
#define FCOMMIT 1                  /* operator's forced commit (allowed case) */
#endif

byte faults = FAULTS;
byte b_ccrash = CCRASH, b_pcrash = PCRASH, b_disc = DISC, b_drop = DROP,
     b_dup = DUP, b_lto = LTO, b_fabort = FABORT, b_novote = NOVOTE,
     b_heur = HEUR, b_fcommit = FCOMMIT;

/* ---- the network: one bag (multiset) per direction and participant ----
 * A message is packed into an int; each bag is kept sorted so that equal
 * multisets are equal states. Any message may be received next (reorder,
 * delay, frames of old connections and epochs included), the environment
 * may drop or duplicate one; K is large enough that a bag never overflows
 * (asserted). */
#define M_PREPARE 1
#define M_COMMIT  2
#define M_ABORT   3
#define M_WELCOME 4
#define M_HELLO   5
#define M_VOTE    6
#define M_DONE    7
/* kind:3 | txn(or nonce):3 | epoch:3 | generation:3 | a:8 | b:8 */
#define ENC(kind, tx, e, g, a, b) \
  ((kind) | ((tx) << 3) | ((e) << 6) | ((g) << 9) | ((a) << 12) | ((b) << 20))

int net[NCH * K];
byte nlen[NCH];

/* ---- broker (shared group of one exactly-once topic partition) -------- */
bit  deleted[NMSG];                /* durable: acked = never delivered again  */
byte lease[NMSG];                  /* volatile: holder txn = delivery token   */

/* ---- coordinator ------------------------------------------------------ */
#define C_NONE       0             /* unknown (never seen, or forgotten)     */
#define C_PREPARING  1             /* leased, PREPARE sent, no record        */
#define C_VOTED      2             /* YES received, decision not yet written */
#define C_COMMITTING 3             /* COMMIT record durable, awaiting DONE    */
#define C_ABORTED    4
#define C_DONE       5
byte epoch = 1;                    /* durable, bumped at every start          */
bit  rec_commit[NT];               /* durable: the COMMIT record (commit point),
                                      removed when T is done                 */
byte ct[NT];                       /* volatile txn table                      */
byte tpart[NT];                    /* txn attributes: participant, batch.    */
byte tbatch[NT];                   /* (part of the record once committed)     */
byte next_t = 1;                   /* never reset: txn ids are unique across
                                      restarts (think "epoch.sequence")      */
byte cgen[NP];                     /* volatile: p's current generation, 0=none */
byte genctr[NP];                   /* volatile generation allocator          */
byte cnonce[NP];                   /* volatile: connection the gen belongs to */

/* ---- participants ----------------------------------------------------- */
#define P_NONE      0
#define P_PREPARED  1
#define P_COMMITTED 2
#define P_ABORTED   3
#define PT(p, x) ((p) * NT + (x))
byte pst[NP * NT];                 /* durable journal: state of T            */
byte staged[NP * NT];              /* durable journal: staged effects of T    */
byte done_ids[NSTORE];             /* durable consumer store: committed ids   */
byte applied[NMSG];                /* durable consumer store: effect counter  */
byte pepoch[NP], pgen[NP];         /* volatile: the session's fence           */
byte pconn[NP];                    /* volatile: 0 down, 1 HELLO sent, 2 up    */
byte pinc[NP];                     /* connection nonce (a new TCP connection) */
bit  broken[NP];                   /* the connection was closed under p       */

/* ---- ghosts (never read by the protocol) ------------------------------ */
bit  g_commit[NT];                 /* a commit decision for T was taken       */
bit  g_abort[NT];                  /* an abort decision/answer for T was given */
bit  p_applied[NT];                /* T's effects became visible in a store   */
bit  p_abort[NT];                  /* a participant discarded T               */
bit  heur[NT];                     /* T was committed by a wrong manual act   */
bit  cmsg[NMSG];                   /* some txn's COMMIT decision covers m      */
byte nprep;                        /* journal entries in state PREPARED       */

/* ---- scratch (not part of the state vector) --------------------------- */
hidden int  vmsg;
hidden byte mk, mt, me, mg, ma, mb;
hidden byte vi, vj, vk, vm, vt, vc, vq, ncand, bb, av, cm, am;
/* private to the d_steps of bag_put/bag_take: a d_step is undone by
   restoring the state vector, which holds no hidden variable, so a d_step
   must not write a hidden variable that its caller reads afterwards */
hidden byte bj;
hidden byte stale, changed, ok;

#define BIT(x, n) (((x) >> (n)) & 1)
/* is a message of this kind and txn/nonce in flight on channel ch? (K <= 6) */
#define SLOT_IS(ch, n, kind, tx) (nlen[ch] > (n) && \
  (net[(ch) * K + (n)] & 63) == ((kind) | ((tx) << 3)))
#define IN_FLIGHT(ch, kind, tx) (SLOT_IS(ch, 0, kind, tx) || \
  (K >= 2 && SLOT_IS(ch, 1, kind, tx)) || (K >= 3 && SLOT_IS(ch, 2, kind, tx)) || \
  (K >= 4 && SLOT_IS(ch, 3, kind, tx)) || (K >= 5 && SLOT_IS(ch, 4, kind, tx)) || \
  (K >= 6 && SLOT_IS(ch, 5, kind, tx)))
#define ALL_M(C) (C(0) && (NMSG < 2 || C(1)))
#define ANY_M(C) (C(0) || (NMSG >= 2 && C(1)))
#define ANY_T(C) (C(1) || (MAXT >= 2 && C(2)) || (MAXT >= 3 && C(3)) || \
                  (MAXT >= 4 && C(4)) || (MAXT >= 5 && C(5)) || \
                  (MAXT >= 6 && C(6)) || (MAXT >= 7 && C(7)))
#define ANY_P(C) (C(0) || (NP >= 2 && C(1)))

/* ---- bag operations --------------------------------------------------- */
#define IS_IN(ch, n, v) (nlen[ch] > (n) && net[(ch) * K + (n)] == (v))
#define HAS_COPY(ch, v) (IS_IN(ch, 0, v) || (K >= 2 && IS_IN(ch, 1, v)) || \
  (K >= 3 && IS_IN(ch, 2, v)) || (K >= 4 && IS_IN(ch, 3, v)) || \
  (K >= 5 && IS_IN(ch, 4, v)) || (K >= 6 && IS_IN(ch, 5, v)))

inline bag_put(ch, v) {
  d_step {
    if
    :: nlen[ch] < K ->
       bj = nlen[ch];
       do
       :: bj > 0 && net[(ch) * K + bj - 1] > (v) ->
          net[(ch) * K + bj] = net[(ch) * K + bj - 1]; bj--
       :: else -> break
       od;
       net[(ch) * K + bj] = (v);
       nlen[ch]++;
       bj = 0
    :: else ->
       /* K is chosen so that this never happens: a full channel would be
          a loss the fault budget does not count */
       assert(nlen[ch] < K)
    fi
  }
}

/* A protocol send: a copy of the very same frame already in flight is not
   sent twice (extra copies are the environment's DUP fault). */
inline bag_send(ch, v) {
  if
  :: HAS_COPY(ch, v) -> skip
  :: else -> bag_put(ch, v)
  fi
}

inline bag_take(ch, idx) {         /* vmsg := element idx, removed */
  d_step {
    vmsg = net[(ch) * K + idx];
    bj = idx;
    do
    :: bj + 1 < nlen[ch] -> net[(ch) * K + bj] = net[(ch) * K + bj + 1]; bj++
    :: else -> break
    od;
    net[(ch) * K + bj] = 0;
    nlen[ch]--;
    bj = 0
  }
}

inline take_any(ch) {              /* receive any message: reorder/delay */
  select(vk : 0 .. nlen[ch] - 1);
  bag_take(ch, vk);
  vk = 0;
  mk = vmsg & 7; mt = (vmsg >> 3) & 7; me = (vmsg >> 6) & 7;
  mg = (vmsg >> 9) & 7; ma = (vmsg >> 12) & 255; mb = (vmsg >> 20) & 255
}

inline clear_scratch() {
  vmsg = 0; mk = 0; mt = 0; me = 0; mg = 0; ma = 0; mb = 0;
  vi = 0; vj = 0; vk = 0; vm = 0; vt = 0; vc = 0; vq = 0; ncand = 0; bb = 0; av = 0;
  cm = 0; am = 0; stale = 0; changed = 0; ok = 0
}

/* ---- broker primitives ------------------------------------------------ */
#define AVAIL(x) (!deleted[x] && lease[x] == 0)
#ifdef BUG_STALE_TOKEN_ACK
/* the broker does not check the delivery token: any lease is taken as the txn's */
#define TOKEN_OK(x, tx) (!deleted[x] && lease[x] != 0)
#else
#define TOKEN_OK(x, tx) (!deleted[x] && lease[x] == (tx))
#endif

/* ---- coordinator primitives (run inside a caller's atomic step) ------- */
inline send_c2p(p, kind, tx) {
  if
  :: cgen[p] != 0 -> bag_send(C2P(p), ENC(kind, tx, epoch, cgen[p], 0, 0))
  :: else -> skip                  /* no connection: nothing to send on */
  fi
}

inline mark_commit(tx) {
  g_commit[tx] = 1;
  for (vm : 0 .. NMSG - 1) {
    if
    :: BIT(tbatch[tx], vm) ->
       assert(!cmsg[vm]);           /* a message is committed by one txn only */
       cmsg[vm] = 1
    :: else -> skip
    fi
  };
  vm = 0
}

/* Presumed abort: nothing is written; the leases are released (nack with
   this delivery's token) so that the batch is redelivered. */
inline abort_txn(tx) {
  abort_quiet(tx);
  send_c2p(tpart[tx], M_ABORT, tx)
}

inline abort_quiet(tx) {
  ct[tx] = C_ABORTED;
  g_abort[tx] = 1;
  for (vm : 0 .. NMSG - 1) {
    if
    :: BIT(tbatch[tx], vm) && TOKEN_OK(vm, tx) -> lease[vm] = 0
    :: else -> skip
    fi
  };
  vm = 0
}

/* (Re-)deliver T's batch: only while every lease of T is still held with
   T's token; a lease that timed out means T is aborted instead. */
inline send_prepare(tx) {
  ok = 1;
  for (vm : 0 .. NMSG - 1) {
    if
    :: BIT(tbatch[tx], vm) && !TOKEN_OK(vm, tx) -> ok = 0
    :: else -> skip
    fi
  };
  if
  :: ok ->
     for (vm : 0 .. NMSG - 1) {
       /* no message whose transaction committed is delivered again */
       assert(!(BIT(tbatch[tx], vm) && cmsg[vm]))
     };
     send_c2p(tpart[tx], M_PREPARE, tx)
  :: else -> abort_txn(tx)
  fi;
  ok = 0; vm = 0
}

/* The commit point. The leases are pinned with their tokens in the same
   step as the durable write: a lease that timed out (and may have been
   redelivered) makes the decision ABORT instead. */
inline decide(tx) {
  ok = 1;
  for (vm : 0 .. NMSG - 1) {
    if
    :: BIT(tbatch[tx], vm) && !TOKEN_OK(vm, tx) -> ok = 0
    :: else -> skip
    fi
  };
  if
  :: ok ->
     rec_commit[tx] = 1;           /* durable COMMIT record */
     mark_commit(tx);
     for (vm : 0 .. NMSG - 1) {
       if
       :: BIT(tbatch[tx], vm) -> lease[vm] = tx    /* pinned: never expires */
       :: else -> skip
       fi
     };
     vm = 0;
#ifdef BUG_DELETE_BEFORE_DONE
     /* bug: delete B and finish T before the participant said DONE */
     for (vm : 0 .. NMSG - 1) {
       if
       :: BIT(tbatch[tx], vm) -> deleted[vm] = 1; lease[vm] = 0
       :: else -> skip
       fi
     };
     vm = 0;
     send_c2p(tpart[tx], M_COMMIT, tx);
     rec_commit[tx] = 0;
     ct[tx] = C_DONE
#else
     ct[tx] = C_COMMITTING;
     send_c2p(tpart[tx], M_COMMIT, tx)
#endif
  :: else -> abort_txn(tx)
  fi;
  ok = 0
}

/* ---- participant primitives ------------------------------------------- */
inline send_p2c(p, kind, tx, a) {
  bag_send(P2C(p), ENC(kind, tx, pepoch[p], pgen[p], a, 0))
}

/* apply T's staged effects in the consumer store (part of a local txn) */
inline apply_staged(p, tx) {
  for (vm : 0 .. NMSG - 1) {
    if
    :: BIT(staged[PT(p, tx)], vm) ->
#ifndef BUG_VOTE_GUARD_ONLY
       if
       :: BIT(done_ids[STORE(p)], vm) -> skip   /* already committed: no-op */
       :: else ->
#endif
          applied[vm]++;
          assert(applied[vm] <= 1)
#ifndef BUG_VOTE_GUARD_ONLY
       fi
#endif
    :: else -> skip
    fi
  };
  vm = 0;
  done_ids[STORE(p)] = done_ids[STORE(p)] | tbatch[tx];
  staged[PT(p, tx)] = 0;
  p_applied[tx] = 1
}

/* one local transaction: apply staged effects + mark T committed + record
   B's message ids */
inline local_commit(p, tx) {
#ifndef BUG_APPLY_ON_PREPARE
  apply_staged(p, tx);
#endif
  pst[PT(p, tx)] = P_COMMITTED;
  nprep--
}

inline local_abort(p, tx) {
  pst[PT(p, tx)] = P_ABORTED;
  staged[PT(p, tx)] = 0;
  nprep--;
  p_abort[tx] = 1
}

#define VOTED(x) (ct[x] == C_VOTED)
#define RESEND_OF_P(x) (tpart[x] == p && \
                        (ct[x] == C_PREPARING || ct[x] == C_COMMITTING))
#define PREPARED_OF_P(x) (pst[PT(p, x)] == P_PREPARED)

/* ======================================================================= */
/* The coordinator's side of participant p's connection, sharing the     */
/* coordinator's and the broker's state with the other sessions.          */
proctype Session(byte p)
{
end:
  do
  /* lease a batch B of available messages and PREPARE(T, B); presumed
     abort: no record is written */
  :: atomic {
       cgen[p] != 0 && next_t <= MAXT && ANY_M(AVAIL) ->
       av = 0;
       for (vm : 0 .. NMSG - 1) {
         if
         :: AVAIL(vm) -> av = av | (1 << vm)
         :: else -> skip
         fi
       };
       bb = 0;
       for (vm : 0 .. NMSG - 1) {
         if
         :: BIT(av, vm) -> bb = bb | (1 << vm)
         :: BIT(av, vm) && !(bb == 0 && (av >> (vm + 1)) == 0) ->
            skip                    /* left out, unless B would be empty */
         :: !BIT(av, vm) -> skip
         fi
       };
       vt = next_t;
       next_t++;
       tpart[vt] = p;
       tbatch[vt] = bb;
       for (vm : 0 .. NMSG - 1) {
         if
         :: BIT(bb, vm) -> lease[vm] = vt
         :: else -> skip
         fi
       };
       ct[vt] = C_PREPARING;
       send_prepare(vt);
       clear_scratch()
     }

  /* timers, abstracted: when nothing is in flight on p's connection,
     re-send what is awaited (PREPARE until a vote, COMMIT until DONE) */
  :: atomic {
       cgen[p] != 0 && nlen[C2P(p)] == 0 && nlen[P2C(p)] == 0 &&
       ANY_T(RESEND_OF_P) ->
       for (vt : 1 .. MAXT) {
         if
         :: tpart[vt] == p && ct[vt] == C_PREPARING -> send_prepare(vt)
         :: tpart[vt] == p && ct[vt] == C_COMMITTING -> send_c2p(p, M_COMMIT, vt)
         :: else -> skip
         fi
       };
       clear_scratch()
     }

  /* receive any message from p */
  :: atomic {
       nlen[P2C(p)] > 0 ->
       take_any(P2C(p));
       if
       :: mk == M_HELLO ->
          /* TCP abstraction: a HELLO opens a connection only if that
             connection is still the participant's live one and still
             waiting for its WELCOME; a HELLO of a closed connection, or a
             copy of one already answered, opens nothing */
          if
          :: mt != pinc[p] || pconn[p] != 1 || broken[p] || mt == cnonce[p] ->
             skip
          :: else ->
             cnonce[p] = mt;
             genctr[p]++;
             assert(genctr[p] < 8);
             cgen[p] = genctr[p];
             /* a lost participant means ABORT: every undecided txn of p's
                older connections is aborted (the in-doubt ones included);
                only the in-doubt ones need telling, in the WELCOME below:
                the others were never prepared by p */
             for (vt : 1 .. MAXT) {
               if
               :: tpart[vt] == p && (ct[vt] == C_PREPARING || ct[vt] == C_VOTED) ->
#ifdef BUG_HELLO_NO_ABORT
                  /* bug: answer ABORT below but let the pending group
                     commit still decide a voted in-doubt txn */
                  if
                  :: ct[vt] == C_VOTED && BIT(ma, vt) -> skip
                  :: else -> abort_quiet(vt)
                  fi
#else
                  abort_quiet(vt)
#endif
               :: else -> skip
               fi
             };
             /* resolutions for the in-doubt txns */
             cm = 0; am = 0;
             for (vt : 1 .. MAXT) {
               if
               :: BIT(ma, vt) && rec_commit[vt] -> cm = cm | (1 << vt)
#ifdef BUG_NO_PRESUMED_ABORT
               /* bug: a txn the (restarted) coordinator does not know is
                  answered COMMIT, without a record */
               :: BIT(ma, vt) && !rec_commit[vt] && ct[vt] == C_NONE ->
                  cm = cm | (1 << vt);
                  mark_commit(vt)
               :: BIT(ma, vt) && !rec_commit[vt] && ct[vt] != C_NONE ->
#else
               :: BIT(ma, vt) && !rec_commit[vt] ->
#endif
                  am = am | (1 << vt);
                  g_abort[vt] = 1       /* presumed abort */
               :: else -> skip
               fi
             };
             bag_send(C2P(p), ENC(M_WELCOME, mt, epoch, cgen[p], cm, am))
          fi
       :: mk == M_VOTE || mk == M_DONE ->
          stale = (cgen[p] == 0 || me != epoch || mg != cgen[p]);
          changed = 0;
          vt = mt;
#ifdef BUG_NO_FENCING
          if
          :: true ->
#else
          if
          :: stale -> skip             /* refused: stale epoch/generation */
          :: else ->
#endif
             if
             :: mk == M_VOTE ->
                if
                :: ct[vt] == C_PREPARING && ma == 1 -> ct[vt] = C_VOTED; changed = 1
                :: ct[vt] == C_PREPARING && ma == 0 -> abort_txn(vt); changed = 1
                :: ct[vt] == C_VOTED -> skip
                :: ct[vt] == C_COMMITTING -> send_c2p(p, M_COMMIT, vt)
                :: ct[vt] == C_ABORTED || ct[vt] == C_NONE ->
                   /* a vote for a txn no longer open: answer its outcome
                      (presumed abort when there is no record) */
                   g_abort[vt] = 1;
                   send_c2p(p, M_ABORT, vt)
                :: ct[vt] == C_DONE -> skip
                fi
             :: mk == M_DONE ->
                if
                :: ct[vt] == C_COMMITTING ->
                   /* broker: delete B (ack), durably; then T -> done and
                      its record removed */
                   for (vm : 0 .. NMSG - 1) {
                     if
                     :: BIT(tbatch[vt], vm) -> deleted[vm] = 1; lease[vm] = 0
                     :: else -> skip
                     fi
                   };
                   vm = 0;
                   rec_commit[vt] = 0;
                   ct[vt] = C_DONE;
                   changed = 1
                :: else -> skip
                fi
             fi
          fi;
#ifndef NO_STALE_ASSERT
          /* a stale epoch or generation never changes state */
          assert(!(stale && changed))
#endif
       fi;
       clear_scratch()
     }
  od
}


/* ======================================================================= */
/* The coordinator's group commit: writes the decisions of all voted txns in
   one SQLite transaction. A process of its own, so that weak fairness
   guarantees that a pending decision is eventually written. */
proctype Flusher()
{
end:
  do
  :: atomic {
       ANY_T(VOTED) ->
       for (vt : 1 .. MAXT) {
         if
         :: ct[vt] == C_VOTED -> decide(vt)
         :: else -> skip
         fi
       };
       clear_scratch()
     }
  od
}

#define HANDSHAKE_LOST(x) (pconn[x] == 1 && \
                           !IN_FLIGHT(P2C(x), M_HELLO, pinc[x]) && \
                           !IN_FLIGHT(C2P(x), M_WELCOME, pinc[x]))

/* ======================================================================= */
proctype Participant(byte p)
{
end:
  do
  /* (re)connect: HELLO with the in-doubt txns, on a new connection; also
     when the handshake was lost (timer, abstracted: neither the HELLO nor
     its WELCOME is in flight any more) */
  :: atomic {
       pconn[p] == 0 || broken[p] || HANDSHAKE_LOST(p) ->
       broken[p] = 0;
       pinc[p]++;
       assert(pinc[p] < 8);
       pconn[p] = 1;
       pepoch[p] = 0;
       pgen[p] = 0;
       am = 0;
       for (vt : 1 .. MAXT) {
         if
         :: pst[PT(p, vt)] == P_PREPARED -> am = am | (1 << vt)
         :: else -> skip
         fi
       };
       bag_send(P2C(p), ENC(M_HELLO, pinc[p], 0, 0, am, 0));
       clear_scratch()
     }

#ifndef BUG_NO_VOTE_TIMER
  /* timer, abstracted: when nothing is in flight, ask again about every
     in-doubt txn by re-sending its vote (presumed abort never re-sends an
     ABORT: without this, a lost ABORT leaves p in doubt until it happens to
     reconnect) */
  :: atomic {
       pconn[p] == 2 && !broken[p] &&
       nlen[C2P(p)] == 0 && nlen[P2C(p)] == 0 && ANY_T(PREPARED_OF_P) ->
       for (vt : 1 .. MAXT) {
         if
         :: pst[PT(p, vt)] == P_PREPARED -> send_p2c(p, M_VOTE, vt, 1)
         :: else -> skip
         fi
       };
       clear_scratch()
     }
#endif

  /* receive any message from the coordinator (not while down: a restarted
     participant has no connection until it sends HELLO; and a lost
     handshake is handled first: whatever could be received meanwhile is
     stale both before and after the reconnect, so the two orders reach the
     same states, and this one cannot starve the reconnect) */
  :: atomic {
       nlen[C2P(p)] > 0 && pconn[p] != 0 && !HANDSHAKE_LOST(p) ->
       take_any(C2P(p));
       if
       :: mk == M_WELCOME ->
          if
          :: pconn[p] != 1 || mt != pinc[p] -> skip   /* not this connection */
          :: else ->
             pepoch[p] = me;
             pgen[p] = mg;
             pconn[p] = 2;
             for (vt : 1 .. MAXT) {
               if
               :: BIT(ma, vt) && pst[PT(p, vt)] == P_PREPARED ->
                  local_commit(p, vt);
                  send_p2c(p, M_DONE, vt, 0)
               :: BIT(ma, vt) && pst[PT(p, vt)] == P_COMMITTED ->
                  send_p2c(p, M_DONE, vt, 0)
               :: BIT(mb, vt) && pst[PT(p, vt)] == P_PREPARED ->
                  local_abort(p, vt)
               :: else -> skip
               fi
             }
          fi
       :: else ->
          stale = (pconn[p] != 2 || me != pepoch[p] || mg != pgen[p]);
          changed = 0;
          vt = mt;
#ifdef BUG_NO_FENCING
          if
          :: true ->
#else
          if
          :: stale -> skip             /* refused: stale epoch/generation */
          :: else ->
#endif
             if
             :: mk == M_PREPARE ->
                if
                :: pst[PT(p, vt)] == P_NONE ->
                   if
                   :: faults > 0 && b_novote > 0 ->
                      faults--; b_novote--;
                      pst[PT(p, vt)] = P_ABORTED;
                      p_abort[vt] = 1;
                      changed = 1;
                      send_p2c(p, M_VOTE, vt, 0)
                   :: true ->
                      /* stage the effects, write (T, B, staged) durably; the
                         idempotence guard stages nothing for ids already
                         committed */
                      staged[PT(p, vt)] = tbatch[vt] & ~done_ids[STORE(p)];
                      pst[PT(p, vt)] = P_PREPARED;
                      nprep++;
                      changed = 1;
#ifdef BUG_APPLY_ON_PREPARE
                      apply_staged(p, vt);
#endif
                      send_p2c(p, M_VOTE, vt, 1)
                   fi
                :: pst[PT(p, vt)] == P_PREPARED || pst[PT(p, vt)] == P_COMMITTED ->
                   send_p2c(p, M_VOTE, vt, 1)
                :: pst[PT(p, vt)] == P_ABORTED ->
                   send_p2c(p, M_VOTE, vt, 0)
                fi
             :: mk == M_COMMIT ->
                /* COMMIT is sent only after a YES vote, and the journal
                   that vote came from is durable */
                assert(pst[PT(p, vt)] != P_NONE);
                if
                :: pst[PT(p, vt)] == P_PREPARED ->
                   local_commit(p, vt);
                   changed = 1;
                   send_p2c(p, M_DONE, vt, 0)
                :: pst[PT(p, vt)] == P_COMMITTED -> send_p2c(p, M_DONE, vt, 0)
                :: else -> skip
                fi
             :: mk == M_ABORT ->
                if
                :: pst[PT(p, vt)] == P_PREPARED -> local_abort(p, vt); changed = 1
                :: pst[PT(p, vt)] == P_NONE ->
                   /* remember it, so that a late PREPARE is voted NO */
                   pst[PT(p, vt)] = P_ABORTED;
                   p_abort[vt] = 1;
                   changed = 1
                :: else -> skip
                fi
             fi
          fi;
#ifndef NO_STALE_ASSERT
          /* a stale epoch or generation never changes state */
          assert(!(stale && changed))
#endif
       fi;
       clear_scratch()
     }
  od
}

/* ======================================================================= */
/* pick the k-th (1-based, chosen nondeterministically) x in lo..hi with C(x) */
#define PICK(var, lo, hi, C) \
  ncand = 0; \
  for (var : lo .. hi) { if :: C(var) -> ncand++ :: else -> skip fi }; \
  select(vk : 1 .. ncand); \
  var = lo; \
  do \
  :: C(var) && vk == 1 -> break \
  :: C(var) && vk > 1 -> vk--; var++ \
  :: !C(var) -> var++ \
  od

#define NONEMPTY(x) (nlen[x] > 0)
#define ROOM(x) (nlen[x] > 0 && nlen[x] < K)
#define EXPIRABLE_LTO(x) (lease[x] != 0 && !deleted[x])
#ifdef BUG_LEASE_EXPIRES_UNDER_DECISION
#define EXPIRABLE(x) EXPIRABLE_LTO(x)
#else
/* leases under a decision never expire */
#define EXPIRABLE(x) (EXPIRABLE_LTO(x) && !rec_commit[lease[x]])
#endif
#define UNDECIDED(x) (ct[x] == C_PREPARING || ct[x] == C_VOTED)
#define FORCE_COMMITTABLE(x) (UNDECIDED(x) && \
                              pst[PT(tpart[x], x)] == P_PREPARED)
#define HEURABLE(x) (pst[PT(0, x)] == P_PREPARED || \
                     (NP >= 2 && pst[PT(NP - 1, x)] == P_PREPARED))
#define CONNECTED(x) (cgen[x] != 0)
#define ANY_CH(C) (C(0) || C(1) || (NP >= 2 && (C(2) || C(3))))

active proctype Env()
{
end:
  do
  /* the coordinator crashes and restarts: volatile state (txn table,
     connections, the broker's leases) is lost, the epoch is bumped, and
     recovery runs before any delivery */
  :: atomic {
       faults > 0 && b_ccrash > 0 ->
       faults--; b_ccrash--;
       epoch++;
       assert(epoch < 8);
       for (vm : 0 .. NMSG - 1) { lease[vm] = 0 };
       for (vt : 1 .. MAXT) {
         if
         :: rec_commit[vt] ->
            ct[vt] = C_COMMITTING;  /* re-drive COMMIT on reconnect */
#ifndef BUG_NO_RECOVERY_DELETE
            for (vm : 0 .. NMSG - 1) {
              if
              :: BIT(tbatch[vt], vm) -> deleted[vm] = 1
              :: else -> skip
              fi
            }
#endif
         :: else -> ct[vt] = C_NONE
         fi
       };
       for (vq : 0 .. NP - 1) {
         cgen[vq] = 0; genctr[vq] = 0; cnonce[vq] = 0;
         broken[vq] = 1             /* the participant will see it closed */
       };
       clear_scratch()
     }

  /* a participant crashes and restarts: its session fence is lost, its
     journal and store are durable */
  :: atomic {
       faults > 0 && b_pcrash > 0 ->
       faults--; b_pcrash--;
       select(vq : 0 .. NP - 1);
       pconn[vq] = 0; pepoch[vq] = 0; pgen[vq] = 0; broken[vq] = 0;
       clear_scratch()
     }

  /* the network closes a connection (both ends notice, the participant
     whenever it likes) */
  :: atomic {
       faults > 0 && b_disc > 0 && ANY_P(CONNECTED) ->
       faults--; b_disc--;
       PICK(vq, 0, NP - 1, CONNECTED);
       cgen[vq] = 0; cnonce[vq] = 0; broken[vq] = 1;
       clear_scratch()
     }

  /* a message is lost */
  :: atomic {
       faults > 0 && b_drop > 0 && ANY_CH(NONEMPTY) ->
       faults--; b_drop--;
       PICK(vc, 0, NCH - 1, NONEMPTY);
       select(vi : 0 .. nlen[vc] - 1);
       bag_take(vc, vi);
       clear_scratch()
     }

  /* a message is duplicated */
  :: atomic {
       faults > 0 && b_dup > 0 && ANY_CH(ROOM) ->
       faults--; b_dup--;
       PICK(vc, 0, NCH - 1, ROOM);
       select(vi : 0 .. nlen[vc] - 1);
       vmsg = net[vc * K + vi];
       bag_put(vc, vmsg);
       clear_scratch()
     }

  /* a lease times out: the message becomes available again (delivery
     count + 1); the coordinator finds out only when it tries to decide */
  :: atomic {
       faults > 0 && b_lto > 0 && ANY_M(EXPIRABLE) ->
       faults--; b_lto--;
       PICK(vm, 0, NMSG - 1, EXPIRABLE);
       lease[vm] = 0;
       clear_scratch()
     }

  /* the vote timer fires, or an operator forces abort: only an undecided
     txn can be aborted */
  :: atomic {
       faults > 0 && b_fabort > 0 && ANY_T(UNDECIDED) ->
       faults--; b_fabort--;
       PICK(vt, 1, MAXT, UNDECIDED);
       abort_txn(vt);
       clear_scratch()
     }

  /* an operator forces commit of an undecided txn whose participant has
     prepared (voted YES); it goes through the same commit point */
  :: atomic {
       faults > 0 && b_fcommit > 0 && ANY_T(FORCE_COMMITTABLE) ->
       faults--; b_fcommit--;
       PICK(vt, 1, MAXT, FORCE_COMMITTABLE);
       decide(vt);
       clear_scratch()
     }

  /* a participant's operator wrongly commits an in-doubt txn by hand */
  :: atomic {
       faults > 0 && b_heur > 0 && ANY_T(HEURABLE) ->
       faults--; b_heur--;
       PICK(vt, 1, MAXT, HEURABLE);
       if
       :: pst[PT(0, vt)] == P_PREPARED -> vq = 0
       :: else -> vq = NP - 1
       fi;
       heur[vt] = 1;
       local_commit(vq, vt);
       clear_scratch()
     }
  od
}

/* ---- the invariants, checked in every state between two steps ----------
 * The monitor can only move when an invariant is false, so it adds no state. */
#define ALL_T(C) (C(1) && (MAXT < 2 || C(2)) && (MAXT < 3 || C(3)) && \
                  (MAXT < 4 || C(4)) && (MAXT < 5 || C(5)) && \
                  (MAXT < 6 || C(6)) && (MAXT < 7 || C(7)))
/* a transaction is never both committed and aborted; a participant's wrong
   manual commit (heur) is the one admitted exception: it is what the
   idempotence guard is there for */
#define ATOMIC_OK(x) (heur[x] || !((g_commit[x] || p_applied[x]) && \
                                   (g_abort[x] || p_abort[x])))
/* no effect applied twice */
#define ONCE_OK(x) (applied[x] <= 1)
/* no loss: a deleted message was applied, or a live COMMIT record still
   covers it (and will be re-driven) */
#define REC_COVERS(tx, x) (MAXT >= (tx) && rec_commit[tx] && BIT(tbatch[tx], x))
#define COVERED(x) (REC_COVERS(1, x) || REC_COVERS(2, x) || REC_COVERS(3, x) || \
                    REC_COVERS(4, x) || REC_COVERS(5, x) || REC_COVERS(6, x) || \
                    REC_COVERS(7, x))
#define NOLOSS_OK(x) (!deleted[x] || applied[x] > 0 || COVERED(x))
#define INVARIANTS (ALL_T(ATOMIC_OK) && ALL_M(ONCE_OK) && ALL_M(NOLOSS_OK))

#ifndef NO_MONITOR
active proctype Monitor()
{
end:
  atomic {
    !INVARIANTS ->
    assert(ALL_T(ATOMIC_OK));
    assert(ALL_M(ONCE_OK));
    assert(ALL_M(NOLOSS_OK))
  }
}
#endif

init {
  atomic {
    for (vq : 0 .. NP - 1) {
      run Session(vq);
      run Participant(vq)
    };
    run Flusher();
    vq = 0
  }
}

/* ---- liveness (run with -a -f; the faults are bounded above) ----------
 * "delivered": every published message is eventually applied exactly once
 * and deleted. deleted[] is never reset and applied[] never decreases and
 * never passes 1 (asserted), so <> ALL_DONE means <>[] ALL_DONE; it is
 * written with <> alone because Spin 6.5.2's weak-fairness search misses
 * the stutter cycle of a terminated run when the claim's accepting cycle
 * has more than one state (as the claim of <>[] p has).
 * "resolved": every transaction a participant prepared is eventually
 * resolved (a resolved journal entry never goes back to PREPARED). */
#define MSG_DONE(x) (deleted[x] && applied[x] == 1)
ltl delivered { <> (ALL_M(MSG_DONE)) }
ltl resolved  { [] ((nprep > 0) -> <> (nprep == 0)) }
