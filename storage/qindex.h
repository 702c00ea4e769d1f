/* qindex.h — the byte layout of the queue index, in one place: its keys and values (database
 * `qindex`) and the per-queue record that goes with them (database `queue_meta`). batch.c
 * encodes, recover.c and batch.c decode, through these functions only. Pure: no LMDB call, no
 * allocation, no I/O. Invariant: memcmp order of encoded keys is (queue id, seq) numeric
 * order, so one queue's entries are contiguous and in seq order in LMDB's default key order.
 *
 *   qindex      key   u64 queue id, u64 seq                                    (16 bytes)
 *               value u64 message id (never 0), u8 flags (STORAGE_IDX_*), u32 epoch
 *                     (never 0), u64 expiry (wall-clock ms, 0: none), u16 returns (23 bytes)
 *   queue_meta  key   u64 queue id
 *               value u64 persistent entries in qindex, u64 highest delivered seq (16 bytes)
 *
 * All integers big-endian (lib/byteorder.h). Decoders accept exactly these sizes and known
 * flag bits: anything else is STORAGE_E_CORRUPT, never followed. */
#ifndef WARREN_STORAGE_QINDEX_H
#define WARREN_STORAGE_QINDEX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    QINDEX_KEY_SIZE = 16,
    QINDEX_VAL_SIZE = 23,
    QINDEX_META_SIZE = 16,
};

/* One index entry's value: the message a queue holds at some seq. */
struct qindex_val {
    uint64_t msg_id;  /* the stored message it names; never 0 */
    uint8_t flags;    /* STORAGE_IDX_* (storage/batch.h) */
    uint32_t epoch;   /* storage open it was written in (transient entries expire with it) */
    uint64_t expires; /* wall-clock ms after which the message is dead (TTL), 0: never */
    uint16_t returns; /* times it came back unacked (quorum delivery count) */
};

/* A queue's record in queue_meta. */
struct qindex_meta {
    uint64_t count;         /* persistent entries of the queue in qindex */
    uint64_t delivered_seq; /* highest seq delivered, 0 for none */
};

/* Key of entry (qid, seq). To position a cursor at a queue's first entry, encode (qid, 0);
 * one past its last entry is (qid + 1, 0). */
void qindex_key_encode(uint8_t key[QINDEX_KEY_SIZE], uint64_t qid, uint64_t seq);
/* 0 with *ret_qid and *ret_seq, or STORAGE_E_CORRUPT (outputs untouched) when len is not
 * QINDEX_KEY_SIZE. */
int qindex_key_decode(const void *key, size_t len, uint64_t *ret_qid, uint64_t *ret_seq);

/* v must be valid (msg_id and epoch not 0, known flags); asserted in debug builds. */
void qindex_val_encode(uint8_t val[QINDEX_VAL_SIZE], const struct qindex_val *v);
/* 0 and *ret, or STORAGE_E_CORRUPT (*ret untouched): wrong size, message id or epoch 0,
 * unknown flag bits. */
int qindex_val_decode(const void *val, size_t len, struct qindex_val *ret);
/* True for a transient entry written by an earlier open than `epoch`: its message was never
 * meant to outlive that run, and the entry is to be dropped. */
bool qindex_val_stale(const struct qindex_val *v, uint32_t epoch);

void qindex_meta_encode(uint8_t val[QINDEX_META_SIZE], const struct qindex_meta *m);
/* 0 and *ret, or STORAGE_E_CORRUPT (*ret untouched) when len is not QINDEX_META_SIZE. */
int qindex_meta_decode(const void *val, size_t len, struct qindex_meta *ret);

#endif
