/* siphash.h — SipHash (Aumasson and Bernstein), a keyed hash for short inputs: with a secret key,
 * a client cannot choose names that all land in one hash bucket. Written from the paper's
 * description; SipHash-2-4 is checked against its test vector in tests/unit/test_hmap.c. */
#ifndef WARREN_SIPHASH_H
#define WARREN_SIPHASH_H
#include <stddef.h>
#include <stdint.h>

/* SipHash-c-d of data[0..len) under the 16-byte key: c compression rounds per 8-byte word,
 * d finalization rounds. 2-4 is the paper's conservative choice; hash tables use 1-3. */
uint64_t siphash(const uint8_t key[16], const void *data, size_t len, int c, int d);

#endif
