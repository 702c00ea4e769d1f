/* unit_storage.h — the assert the storage unit tests share: a storage status checked with both
 * codes spelled out by storage_strerror(). Header-only. */
#ifndef WARREN_TESTS_UNIT_STORAGE_H
#define WARREN_TESTS_UNIT_STORAGE_H
#include "unit.h"

#include "storage/env.h"

#define assert_st(expr, want)                                                                  \
    do {                                                                                       \
        int rc_ = (expr), want_ = (want);                                                      \
        if (rc_ != want_)                                                                      \
            fail_msg("%s = %d (%s), want %d (%s)", #expr, rc_,                                 \
                     rc_ ? storage_strerror(rc_) : "ok", want_,                                \
                     want_ ? storage_strerror(want_) : "ok");                                  \
    } while (0)

#endif
