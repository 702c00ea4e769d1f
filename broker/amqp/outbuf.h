/* outbuf.h — a connection's pending output: bytes copied into pooled 16 KiB blocks, plus
 * references to large message bodies (sent from the message itself, not copied), laid out
 * as one iovec list so a whole loop turn's output leaves in one write. */
#ifndef WARREN_OUTBUF_H
#define WARREN_OUTBUF_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct msg;
#define OUTBUF_BLOCK 16384

struct oblock {
    struct oblock *next; /* owned (chain) */
    size_t used, cap;
    uint8_t data[];
};

/* Free list of standard blocks, one per loop (its connections share it). */
struct opool {
    struct oblock *free; /* owned */
    unsigned len;
};

struct outbuf {
    struct opool *pool;         /* borrowed: the server's, outlives every connection */
    struct oblock *head, *tail; /* owned */
    uv_buf_t *iov;              /* owned */
    uint32_t niov, iov_cap;
    struct msg **refs; /* owned array; each entry is a ref released on reset */
    uint32_t nrefs, refs_cap;
    size_t bytes; /* total queued */
    int oom;      /* an allocation failed: the connection must be dropped */
};

/* Returns a pointer to n contiguous writable bytes; make them part of the output with
 * outbuf_commit(ob, n) (any n' <= n). NULL (and ob->oom set) on allocation failure. */
uint8_t *outbuf_reserve(struct outbuf *ob, size_t n);
void outbuf_commit(struct outbuf *ob, size_t n);
/* Copies bytes in. */
void outbuf_append(struct outbuf *ob, const void *p, size_t n);
/* Queues n bytes at p, which live inside message m: takes a reference on m. */
void outbuf_append_ref(struct outbuf *ob, struct msg *m, const uint8_t *p, size_t n);
/* Drops everything queued (after it was written): releases refs, keeps one block. */
void outbuf_reset(struct outbuf *ob);
void outbuf_free(struct outbuf *ob);

void opool_drain(struct opool *pool);

#endif
