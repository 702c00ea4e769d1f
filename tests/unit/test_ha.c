/* test_ha.c — broker/ha's judgement of the filesystem a shared data directory is on
 * (ha_mount_verdict), from /proc/self/mountinfo texts: local filesystems and NFSv4 with
 * local_lock=none pass; NFSv3 and local_lock other than none are refused with a reason; the
 * longest matching mount point decides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "broker/ha/ha.h"

static const char *const mountinfo =
    "21 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
    "30 21 0:40 / /mnt/efs rw,relatime shared:12 - nfs4 fs-1.efs:/ rw,vers=4.1,rsize=1048576,"
    "hard,proto=tcp,timeo=600,local_lock=none,addr=10.0.0.5\n"
    "31 21 0:41 / /mnt/old rw,relatime shared:13 - nfs srv:/export rw,vers=3,hard,"
    "local_lock=none\n"
    "32 21 0:42 / /mnt/flock rw,relatime shared:14 - nfs4 srv:/x rw,vers=4.2,local_lock=flock\n"
    "33 30 0:43 / /mnt/efs/inner rw,relatime shared:15 - tmpfs tmpfs rw\n"
    "34 21 0:44 / /mnt/efsx rw - nfs srv:/y rw,vers=3\n";

static void verdict(const char *path, int want, const char *words)
{
    char why[512] = "";
    int rc = ha_mount_verdict(mountinfo, path, why, sizeof why);
    assert_int_equal(rc, want);
    if (words)
        assert_non_null(strstr(why, words));
}

static void test_local_and_nfs4_pass(void **state)
{
    (void)state;
    verdict("/var/lib/warren/data", 0, NULL);
    verdict("/mnt/efs/warren", 0, NULL);
    verdict("/mnt/efs", 0, NULL);
    verdict("/mnt/efs/inner/data", 0, NULL); /* the tmpfs mounted inside decides */
}

static void test_nfs3_and_local_lock_refused(void **state)
{
    (void)state;
    verdict("/mnt/old/data", -1, "NFS version 3");
    verdict("/mnt/flock/data", -1, "local_lock=flock");
    verdict("/mnt/efsx/data", -1, "NFS version 3"); /* /mnt/efs is not a prefix of it */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_and_nfs4_pass),
        cmocka_unit_test(test_nfs3_and_local_lock_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
