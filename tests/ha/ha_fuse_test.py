#!/usr/bin/python3
"""Active/standby on shared storage that misbehaves (issue 13): two warrend with ha.mode = shared,
each on its own warren-testfs mount ('host') of one backing directory, with an NFSv4-like lock
lease of LEASE s and ha.fence_deadline below it. Owns its temporary directory, both mounts and
both brokers, and unmounts them whatever happens.
- Freeze the active's mount (a hard mount cut off from its server) during confirmed persistent
  publishing from 4 publishers: the active's watchdog stops it (exit 75) before the lease ends,
  the standby takes the lock only after it, nothing the old active confirmed is lost, and the
  write log shows no write through the old mount after the new active's first write.
- EIO on the active's mount: it stops within a heartbeat interval; the other takes over.
- Locks that exclude nothing (the mount grants every lock): start-up refuses with one line.
- Power cuts: kill -9 of the active and, at once, its mount drops every write not yet
  fsync'ed/fdatasync'ed; the other takes over; every confirmed message is present each time
  (HA_POWERCUTS rounds, default 20).
Env: WARREND, WARREN_TESTFS. Exit 0 pass, 1 fail, 77 skip (no FUSE, no pika)."""
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "fusefs"), os.path.join(HERE, "..", "interop")]
try:
    from conf_broker import check, finish, free_port, listening
    from ha_test import Node, Publishers, drain, wait_serving
    from testfs_test import Mount
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)

LEASE = 2.0          # s, the test filesystem's lock lease (an NFS server's lease time)
HEARTBEAT = 200      # ms, ha.heartbeat_interval
DEADLINE = 1000      # ms, ha.fence_deadline: below LEASE minus a margin, as docs/ha.md says
POWERCUTS = int(os.environ.get("HA_POWERCUTS", "20"))
# Operations that change the shared storage, in warren-testfs's write log.
WRITES = {"write", "sync", "trunc", "falloc", "create", "rename", "unlink", "mkdir", "rmdir"}


def log_lines(logdir):
    """The write log: (seq, mount, op, path, length) per line."""
    with open(os.path.join(logdir, "writes.log")) as f:
        return [(int(p[0]), p[2], p[4], p[7] if len(p) > 7 else "", int(p[6]))
                for p in (ln.split() for ln in f)]


def ctl_seq(logdir, mount, cmd):
    """The sequence number of the last control command cmd given to mount."""
    return max(s for s, m, op, path, _n in log_lines(logdir) if m == mount and op == "ctl"
               and path == cmd)


def wait_exit(node, limit):
    """(exit status, seconds waited) of node's process, or (None, limit)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        rc = node.w.proc.poll()
        if rc is not None:
            return rc, time.monotonic() - t0
        time.sleep(0.005)
    return None, limit


def lost_of(confirmed, got):
    return [i for i in confirmed if i not in got]


def test_freeze(logdir, mounts, active, standby):
    """The active's mount freezes: the watchdog must stop it before the lease ends."""
    pubs = Publishers(active, "fz-q", 0)
    time.sleep(1.0)
    t0 = time.monotonic()
    mounts[active.name].ctl("freeze")
    status, exited = wait_exit(active, LEASE + 10)
    took = wait_serving(standby, t0, limit=LEASE + 15)
    confirmed = pubs.join()
    check(status == 75, f"freeze: the active fenced itself (exit {status})")
    check("fencing myself: no heartbeat reached the shared storage within ha.fence_deadline"
          in active.w.log_text(), "freeze: the active says why it stopped")
    check(exited < LEASE, f"freeze: the active stopped {exited:.2f} s after the freeze, before "
          f"the {LEASE} s lease ran out")
    check(took is not None and took > exited, f"freeze: the standby serves after the active "
          f"stopped ({took} s vs {exited:.2f} s)")
    print(f"freeze: the active stopped after {exited * 1000:.0f} ms (ha.fence_deadline "
          f"{DEADLINE} ms), the standby served after {took} s (lease {LEASE} s)")
    if took is None:
        return False
    check(standby.health() == (200, "active"), "freeze: /health of the new active")
    got = drain(standby, "fz-q")
    lost = lost_of(confirmed, got)
    check(confirmed and not lost, f"freeze: {len(lost)} of {len(confirmed)} confirmed messages "
          f"lost (first {lost[:5]})")
    # Thawed, the old host's mount finds its lease gone; blocked requests of the dead process
    # were refused. Nothing written through it may follow the new active's first write.
    mounts[active.name].ctl("thaw")
    time.sleep(0.5)
    since = ctl_seq(logdir, active.name, "freeze")
    lines = [ln for ln in log_lines(logdir) if ln[0] > since and ln[2] in WRITES]
    new_first = min((ln[0] for ln in lines if ln[1] == standby.name), default=None)
    late = [ln for ln in lines if ln[1] == active.name and new_first and ln[0] > new_first]
    check(new_first is not None, "freeze: the write log shows the new active's writes")
    check(not late, f"freeze: writes through the old active's mount after the new active's "
          f"first write: {late[:5]}")
    leaselost = [ln for ln in log_lines(logdir) if ln[0] > since and ln[1] == active.name and
                 ln[2] == "leaselost"]
    check(leaselost, "freeze: the frozen mount's lease expired")
    return True


def test_eio(mounts, active, standby):
    """EIO on the active's mount: it must stop within a heartbeat interval."""
    pubs = Publishers(active, "eio-q", 0)
    time.sleep(0.5)
    t0 = time.monotonic()
    mounts[active.name].ctl("eio")
    status, exited = wait_exit(active, 10)
    took = wait_serving(standby, t0, limit=LEASE + 15)
    confirmed = pubs.join()
    # The watchdog's heartbeat (exit 75) or, under load, a commit (exit 70) meets it first.
    log = active.w.log_text()
    check((status == 75 and "fencing myself: the shared storage answered EIO" in log) or
          (status == 70 and "storage failure: " in log and "stopping so that a standby can "
           "take over" in log), f"eio: the active stopped and said why (exit {status})")
    # One interval, plus what one pwrite + fdatasync and the exit take under the sanitizers.
    check(exited < HEARTBEAT / 1000 + 0.3, f"eio: the active stopped {exited * 1000:.0f} ms "
          f"after the first EIO (ha.heartbeat_interval {HEARTBEAT} ms)")
    print(f"eio: the active stopped after {exited * 1000:.0f} ms, the standby served after "
          f"{took} s")
    mounts[active.name].ctl("ok")
    if not check(took is not None, "eio: the standby took over"):
        return False
    got = drain(standby, "eio-q")
    lost = lost_of(confirmed, got)
    check(confirmed and not lost, f"eio: {len(lost)} of {len(confirmed)} confirmed messages lost "
          f"(first {lost[:5]})")
    return True


def test_powercuts(logdir, mounts, active, standby):
    """kill -9 and a power cut of the active's mount, POWERCUTS times, alternating."""
    times, dropped = [], 0
    for rnd in range(POWERCUTS):
        pubs = Publishers(active, "pc-q", rnd * 10 * 1000000)
        time.sleep(random.uniform(0.3, 0.9))
        since = max(ln[0] for ln in log_lines(logdir))
        t0 = time.monotonic()
        active.kill9()
        mounts[active.name].ctl("powercut")
        took = wait_serving(standby, t0, limit=LEASE + 15)
        confirmed = pubs.join()
        if not check(took is not None, f"powercut {rnd}: the standby did not take over"):
            return
        times.append(took)
        cut = [ln for ln in log_lines(logdir) if ln[1] == active.name and ln[2] == "powercut"]
        check(cut and cut[-1][0] > since, f"powercut {rnd}: logged")
        got = drain(standby, "pc-q")
        lost = lost_of(confirmed, got)
        check(confirmed and not lost, f"powercut {rnd}: {len(lost)} of {len(confirmed)} "
              f"confirmed messages lost (first {lost[:5]})")
        dropped += cut[-1][4] if cut else 0
        print(f"powercut {rnd}: {len(confirmed)} confirmed, {cut[-1][4] if cut else '?'} "
              f"unsynced bytes dropped, takeover {took * 1000:.0f} ms")
        active.start(standby=True)
        active, standby = standby, active
    if times:
        print(f"power cuts: {len(times)}, {dropped} unsynced bytes dropped in all; takeover min "
              f"{min(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms")


def test_no_locks(mounts):
    """A filesystem whose locks exclude nothing: the probe (a second open file description must
    not get the lock) refuses to start."""
    m = mounts["a"]
    m.ctl("locks off")
    try:
        out = subprocess.run([os.environ["WARREND"], "--ha", "shared", "--data-dir",
                              m.p("data-nolocks"), "--port", str(free_port()),
                              "--no-management", "--no-prometheus"],
                             capture_output=True, text=True, timeout=30)
        check(out.returncode == 78 and "does not enforce locks" in out.stderr and
              not os.path.exists(os.path.join(m.p("data-nolocks"), "data.mdb")),
              f"locks that exclude nothing: exit {out.returncode}, {out.stderr[-300:]!r}")
        print(f"no locks: refused with exit {out.returncode}")
    finally:
        m.ctl("locks on")


def main():
    testfs = os.environ.get("WARREN_TESTFS", "")
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND not set")
        return 77
    if not testfs or not os.access(testfs, os.X_OK) or not shutil.which("fusermount3") or \
            not os.access("/dev/fuse", os.R_OK | os.W_OK):
        print("SKIP: no FUSE here (warren-testfs built from libfuse3-dev, fuse3, /dev/fuse)")
        return 77
    # meson stops a test that overruns with SIGTERM: unmount on the way out even then
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    root = tempfile.mkdtemp(prefix="warren-ha-fuse-")
    back, logdir = os.path.join(root, "backing"), os.path.join(root, "log")
    os.makedirs(back)
    os.makedirs(logdir)
    mounts, nodes = {}, []
    try:
        mroot = os.path.join(root, "mnt")  # the nodes keep their config and log in root/NAME
        for name in ("a", "b"):
            mounts[name] = Mount(mroot, back, name, logdir, lease=str(LEASE))
        a, b = (Node(root, n, mounts[n].p("data"), heartbeat=HEARTBEAT, deadline=DEADLINE)
                for n in ("a", "b"))
        test_no_locks(mounts)
        nodes = [a, b]
        a.start(standby=False)
        b.start(standby=True)
        check(a.health() == (200, "active") and b.health() == (503, "standby"),
              f"/health on the mounts: {a.health()} {b.health()}")
        check(not listening(b.w.port), "the standby does not listen")
        if test_freeze(logdir, mounts, a, b):
            a.start(standby=True)
            if test_eio(mounts, b, a):
                b.start(standby=True)
                test_powercuts(logdir, mounts, a, b)
    finally:
        for n in nodes:
            if n.w and n.w.proc.poll() is None:
                n.w.proc.kill()
                n.w.proc.wait()
        for m in mounts.values():
            m.unmount()
        if os.environ.get("HA_KEEP"):
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return finish("ha-fuse")


if __name__ == "__main__":
    sys.exit(main())
