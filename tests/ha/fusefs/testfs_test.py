#!/usr/bin/python3
"""Self-test of warren-testfs (issue 13's test filesystem; owns its temporary backing directory,
its two mounts 'a' and 'b' and the warrend it starts, and unmounts them whatever happens).
Checks with plain file operations and fcntl locks: passthrough (read, write, holes, truncate,
fallocate, append, directories, rename, MAP_SHARED mmap seeing pwrite); unsynced writes seen by
their own mount only and reaching the backing file at fsync/fdatasync only, not at close; power
cut (unsynced data gone, old handles EIO, the locks stay until the lease ends); eio/ok;
freeze/thaw (I/O blocks, the other mount works, SIGKILL still ends a blocked process); OFD,
POSIX and flock locks shared by both mounts, released at close, blocking waits; the lease
(renewed while not frozen, expiring while frozen: then its locks, its open files and its
unsynced writes are gone, as an NFSv4 client's state); the write
log; and warrend (LMDB) publishing and getting a message with its data directory on a mount.
Invariant checked throughout: the backing file only holds what was synced.
Env: WARREN_TESTFS (the binary), WARREND. Exit 0 pass, 1 fail, 77 skip (no FUSE)."""
import errno
import fcntl
import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "interop"))

TESTFS = os.environ.get("WARREN_TESTFS", "")
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38  # Linux; fcntl has them from 3.9 on

try:  # the tests' shared check(), after the path above
    from conf_broker import check, failures  # noqa: E402
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


class Mount:
    """One warren-testfs mount (one 'host') of the shared backing directory, in the
    foreground as our child, its stderr in ROOT/NAME.log."""

    def __init__(self, root, backing, name, logdir, lease=None):
        self.name, self.path = name, os.path.join(root, name)
        os.makedirs(self.path, exist_ok=True)
        self.ctl_path = os.path.join(self.path, ".warren-testfs-ctl")
        opts = f"name={name},log={logdir}" + (f",lease={lease}" if lease else "")
        self.logf = open(os.path.join(root, name + ".log"), "w")
        self.proc = subprocess.Popen([TESTFS, backing, self.path, "-f", "-o", opts],
                                     stderr=self.logf)
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.logf.flush()
                with open(self.logf.name) as f:
                    text = f.read()
                self.proc = None
                raise RuntimeError(f"mount {name} failed: {text.strip()}")
            time.sleep(0.02)

    def p(self, *names):
        return os.path.join(self.path, *names)

    def ctl(self, *cmds):
        with open(self.ctl_path, "w") as f:
            f.write("".join(c + "\n" for c in cmds))

    def status(self):
        with open(self.ctl_path) as f:
            return dict(kv.split("=", 1) for kv in f.read().split())

    def unmount(self):
        """Thaws, unmounts (lazily if busy) and waits for the process; always safe to call."""
        if self.proc is None:
            return
        try:  # first: even a stat of the mount's root blocks while it is frozen
            self.ctl("thaw", "ok")
        except OSError:
            pass
        if os.path.ismount(self.path):
            if subprocess.run(["fusermount3", "-u", self.path], capture_output=True).returncode:
                subprocess.run(["fusermount3", "-u", "-z", self.path], capture_output=True)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            subprocess.run(["fusermount3", "-u", "-z", self.path], capture_output=True)
        self.proc = None
        self.logf.close()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data, sync=False, mode="wb"):
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def in_thread(fn):
    """Runs fn in a daemon thread; returns (thread, box) where box gets 'ok' or 'err'."""
    box = {}

    def run():
        try:
            box["ok"] = fn()
        except Exception as e:  # noqa: BLE001 — reported by the caller
            box["err"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def errno_of(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


def ofd(fd, cmd, typ, start=0, length=0):
    """fcntl with an OFD lock request (struct flock: type, whence, start, len, pid)."""
    arg = struct.pack("hhqqi4x", typ, os.SEEK_SET, start, length, 0)
    return struct.unpack("hhqqi4x", fcntl.fcntl(fd, cmd, arg))


def eventually(fn, secs=2.0):
    """fn() until true or secs pass: FUSE sends the release of a closed file asynchronously,
    so the locks taken through it go a moment after close() returns."""
    deadline = time.monotonic() + secs
    while not fn():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def can_ofd(fd, typ=fcntl.F_WRLCK, start=0, length=0):
    try:
        ofd(fd, F_OFD_SETLK, typ, start, length)
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


# ---- the checks ----------------------------------------------------------------------------

def test_passthrough(a, b, back):
    write(a.p("f"), b"hello")
    check(read(a.p("f")) == b"hello", "a reads what it wrote")
    check(read(os.path.join(back, "f")) == b"", "unsynced data is not in the backing file")
    check(read(b.p("f")) == b"", "b does not see a's unsynced data")
    check(os.stat(a.p("f")).st_size == 5 and os.stat(b.p("f")).st_size == 0,
          "sizes: a sees its unsynced data, b does not")
    fd = os.open(a.p("f"), os.O_RDWR)
    os.pwrite(fd, b"XY", 2)
    check(os.pread(fd, 10, 0) == b"heXYo", "overwrite merged in a's cache")
    os.fdatasync(fd)
    os.close(fd)
    check(read(os.path.join(back, "f")) == b"heXYo", "fdatasync writes back")
    check(read(b.p("f")) == b"heXYo", "b sees synced data")

    fd = os.open(a.p("f"), os.O_RDWR)
    os.pwrite(fd, b"Z", 10000)  # a hole up to cached data
    check(os.fstat(fd).st_size == 10001, "a hole extends the size")
    data = os.pread(fd, 20000, 0)
    check(data[:5] == b"heXYo" and data[5:10000] == bytes(9995) and data[10000:] == b"Z",
          "reading across the hole")
    os.close(fd)
    check(os.stat(os.path.join(back, "f")).st_size == 5, "closing does not write back")
    check(read(a.p("f"))[-1:] == b"Z", "a still sees its unsynced data after close")
    os.truncate(a.p("f"), 3)
    check(read(os.path.join(back, "f")) == b"heX" and read(a.p("f")) == b"heX",
          "truncate is synchronous and forgets cached bytes beyond it")
    fd = os.open(a.p("f"), os.O_RDWR)
    os.ftruncate(fd, 6)
    check(os.pread(fd, 10, 0) == b"heX\0\0\0", "ftruncate extends with zeros")
    os.posix_fallocate(fd, 0, 65536)
    check(os.fstat(fd).st_size == 65536, "posix_fallocate")
    os.close(fd)

    write(a.p("log"), b"one\n", sync=True)
    fd = os.open(a.p("log"), os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"two\n")
    os.write(fd, b"three\n")
    os.fsync(fd)
    os.close(fd)
    check(read(os.path.join(back, "log")) == b"one\ntwo\nthree\n", "O_APPEND appends")

    os.makedirs(a.p("d", "e"))
    write(a.p("d", "e", "g"), b"g", sync=True)
    os.rename(a.p("d", "e", "g"), a.p("d", "h"))
    check(sorted(os.listdir(b.p("d"))) == ["e", "h"], "mkdir and rename seen by b at once")
    check(sorted(os.listdir(a.p())) == sorted(os.listdir(b.p())) ==
          sorted(n for n in os.listdir(back) if n != ".warren-testfs-state"),
          "both mounts list the backing directory, without the state file")
    check(not os.path.exists(a.p(".warren-testfs-state")), "the state file is hidden")
    os.unlink(a.p("d", "h"))
    os.rmdir(a.p("d", "e"))
    os.rmdir(a.p("d"))
    check(not os.path.exists(os.path.join(back, "d")), "unlink and rmdir")

    # LMDB's pattern: a read-only MAP_SHARED map, writes with pwrite through another fd.
    write(a.p("m"), b"a" * 8192, sync=True)
    fd = os.open(a.p("m"), os.O_RDONLY)
    mm = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ)
    wfd = os.open(a.p("m"), os.O_RDWR)
    os.pwrite(wfd, b"b" * 4096, 4096)
    check(mm[4096:4100] == b"bbbb" and mm[0:4] == b"aaaa", "the map sees pwrite at once")
    check(read(b.p("m"))[4096:4100] == b"aaaa", "b does not see the unsynced pwrite")
    os.fsync(wfd)
    check(read(b.p("m"))[4096:4100] == b"bbbb", "b sees it after fsync")
    mm.close()
    os.close(fd)
    os.close(wfd)


def test_powercut(a, b, back):
    write(a.p("pc"), b"synced.", sync=True)
    write(a.p("pc"), b"unsynced", mode="ab")  # closed, never synced
    fd = os.open(a.p("pc"), os.O_RDWR)
    os.pwrite(fd, b"more", 100)
    check(read(a.p("pc"))[:15] == b"synced.unsynced", "a sees its unsynced writes")
    a.ctl("powercut")
    check(read(a.p("pc")) == b"synced.", "after the power cut only synced data is left")
    check(read(os.path.join(back, "pc")) == b"synced.", "and the backing file never had more")
    # (a read through it may be answered from the kernel's page cache, refilled by the read
    # above; writes and syncs always reach the filesystem)
    check(errno_of(lambda: os.pwrite(fd, b"x", 0)) == errno.EIO, "a handle from before: EIO")
    check(errno_of(lambda: os.fsync(fd)) == errno.EIO, "nor fsync")
    os.close(fd)
    check(a.status()["boot"] == "1" and a.status()["unsynced"] == "0", "status after powercut")
    write(a.p("pc"), b"again", sync=True)
    check(read(b.p("pc")) == b"again", "the mount works after the power cut")


def test_eio(a, b):
    write(a.p("e"), b"data", sync=True)
    fd = os.open(a.p("e"), os.O_RDWR)
    a.ctl("eio")
    check(errno_of(lambda: read(a.p("e"))) == errno.EIO, "eio: open fails")
    check(errno_of(lambda: os.stat(a.p("e"))) == errno.EIO, "eio: stat fails")
    check(errno_of(lambda: os.pread(fd, 4, 0)) == errno.EIO, "eio: read fails")
    check(errno_of(lambda: os.pwrite(fd, b"x", 0)) == errno.EIO, "eio: write fails")
    check(errno_of(lambda: os.fsync(fd)) == errno.EIO, "eio: fsync fails")
    check(read(b.p("e")) == b"data", "b works meanwhile")
    check(a.status()["eio"] == "1", "status shows eio")
    a.ctl("ok")
    check(os.pread(fd, 4, 0) == b"data", "ok: works again")
    os.close(fd)


def test_freeze(a, b, logdir):
    write(a.p("fz"), b"before", sync=True)
    # A process blocked on the frozen mount still dies on SIGKILL (a killable hard mount).
    # Spawned while this process holds no fd on the mount: the child closes inherited fds
    # before exec, and a close (flush) on a frozen mount blocks, as on a hard NFS mount.
    a.ctl("freeze")
    child = subprocess.Popen([sys.executable, "-c", f"open({a.p('fz')!r}).read()"])
    time.sleep(0.3)
    check(child.poll() is None, "a child reading the frozen mount blocks")
    child.kill()
    try:
        child.wait(3)
        check(True, "")
    except subprocess.TimeoutExpired:
        check(False, "SIGKILL ends a process blocked on a frozen mount")
    a.ctl("thaw")
    fd = os.open(a.p("fz"), os.O_RDWR)
    a.ctl("freeze")
    t, box = in_thread(lambda: read(a.p("fz")))
    t2, box2 = in_thread(lambda: os.pwrite(fd, b"zombie", 0))
    time.sleep(0.5)
    check(t.is_alive() and t2.is_alive(), "frozen: read and write through a block")
    check(read(b.p("fz")) == b"before", "b works while a is frozen")
    write(b.p("fz"), b"B wrote", sync=True)
    check(a.status()["frozen"] == "1", "the control file answers while frozen")
    a.ctl("thaw")
    t.join(5)
    t2.join(5)
    # (the blocked read and the blocked write resume in either order)
    check(box.get("ok") in (b"B wrote", b"zombiee"), f"after thaw the read completes: {box}")
    check(box2.get("ok") == 6, f"after thaw the write completes: {box2}")
    os.close(fd)
    # The log shows the zombie write (a's, after thaw) after b's write and sync.
    lines = [ln.split() for ln in open(os.path.join(logdir, "writes.log"))]
    fz = [(int(ln[0]), ln[2], ln[4]) for ln in lines if ln[-1] == "/fz"]
    b_sync = max(s for s, m, op in fz if m == "b" and op == "sync")
    a_after = [s for s, m, op in fz if m == "a" and op == "write" and s > b_sync]
    check(len(a_after) == 1, f"the log orders a's late write after b's sync: {fz}")


def test_locks(a, b):
    write(a.p("lk"), b"lock file", sync=True)
    fa = os.open(a.p("lk"), os.O_RDWR)
    fa2 = os.open(a.p("lk"), os.O_RDWR)
    fb = os.open(b.p("lk"), os.O_RDWR)
    check(can_ofd(fa), "a takes an OFD write lock")
    check(can_ofd(fa), "taking it again through the same open file works")
    check(not can_ofd(fb), "b cannot take it")
    check(not can_ofd(fa2), "nor a second open file description on a (the warrend probe)")
    got = ofd(fb, F_OFD_GETLK, fcntl.F_WRLCK)
    check(got[0] == fcntl.F_WRLCK, f"F_OFD_GETLK through b reports it: {got}")
    ofd(fa, F_OFD_SETLK, fcntl.F_UNLCK)
    check(ofd(fb, F_OFD_GETLK, fcntl.F_WRLCK)[0] == fcntl.F_UNLCK, "unlocked: GETLK is clear")
    # Byte ranges and shared locks.
    check(can_ofd(fa, fcntl.F_WRLCK, 0, 10) and can_ofd(fb, fcntl.F_WRLCK, 10, 10),
          "disjoint ranges through a and b")
    check(not can_ofd(fb, fcntl.F_WRLCK, 5, 3), "an overlapping range conflicts")
    ofd(fa, F_OFD_SETLK, fcntl.F_UNLCK, 0, 10)
    ofd(fb, F_OFD_SETLK, fcntl.F_UNLCK, 10, 10)
    check(can_ofd(fa, fcntl.F_RDLCK) and can_ofd(fb, fcntl.F_RDLCK), "read locks share")
    check(not can_ofd(fb, fcntl.F_WRLCK), "a write lock waits for the other reader")
    ofd(fb, F_OFD_SETLK, fcntl.F_UNLCK)
    check(can_ofd(fa, fcntl.F_WRLCK), "the sole reader upgrades")
    # Closing the open file releases its OFD lock; a blocked F_OFD_SETLKW then gets it.
    t, box = in_thread(lambda: ofd(fb, F_OFD_SETLKW, fcntl.F_WRLCK))
    time.sleep(0.3)
    check(t.is_alive(), "F_OFD_SETLKW through b waits")
    os.close(fa)
    t.join(3)
    check(not t.is_alive() and "ok" in box, "closing a's open file hands the lock to b")
    check(not can_ofd(fa2), "b holds it now")
    os.close(fb)
    check(eventually(lambda: can_ofd(fa2)), "and b's close releases it")
    os.close(fa2)

    # POSIX (process-owned) locks: another process through b, released when we close any fd.
    fa = os.open(a.p("lk"), os.O_RDWR)
    fa_other = os.open(a.p("lk"), os.O_RDONLY)
    fcntl.lockf(fa, fcntl.LOCK_EX | fcntl.LOCK_NB)
    probe = ("import fcntl,sys\nf=open(sys.argv[1],'r+')\n"
             "try:\n fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB); print('got')\n"
             "except OSError: print('busy')\n")
    run = lambda: subprocess.run([sys.executable, "-c", probe, b.p("lk")],  # noqa: E731
                                 capture_output=True, text=True, timeout=10).stdout.strip()
    check(run() == "busy", "a POSIX lock through a excludes another process through b")
    os.close(fa_other)  # POSIX: closing any fd of the file drops the process's locks
    check(run() == "got", "closing another fd of ours released it")
    os.close(fa)

    # flock, through both mounts.
    fa, fb = open(a.p("lk")), open(b.p("lk"))
    fcntl.flock(fa, fcntl.LOCK_EX)
    check(errno_of(lambda: fcntl.flock(fb, fcntl.LOCK_EX | fcntl.LOCK_NB)) == errno.EAGAIN,
          "flock through a excludes flock through b")
    fa.close()
    check(eventually(lambda: errno_of(lambda: fcntl.flock(fb, fcntl.LOCK_EX | fcntl.LOCK_NB)) == 0),
          "a's close releases its flock")
    fb.close()


def test_lease(a, b, back):
    a.ctl("lease 1")
    check(a.status()["lease"] == "1.000", "lease set through the control file")
    fa = os.open(a.p("lk"), os.O_RDWR)
    fb = os.open(b.p("lk"), os.O_RDWR)
    check(can_ofd(fa), "a takes the lock")
    time.sleep(2.5)
    check(not can_ofd(fb), "a's lease is renewed while a is not frozen")
    write(a.p("ll"), b"never synced")
    a.ctl("freeze")
    t0 = time.monotonic()
    check(not can_ofd(fb), "frozen: the lock holds until the lease runs out")
    while not can_ofd(fb) and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    took = time.monotonic() - t0
    check(0.7 < took < 2.5, f"b takes the lock about 1 s after a froze ({took:.2f} s)")
    a.ctl("thaw")
    check(errno_of(lambda: os.pread(fa, 4, 0)) == errno.EIO,
          "after thaw, the open file whose lock was lost gets EIO")
    check(int(a.status()["dead_handles"]) >= 1, "status counts it")
    check(read(a.p("ll")) == b"" and read(os.path.join(back, "ll")) == b"",
          "the unsynced writes went with the lease")
    fa2 = os.open(a.p("lk"), os.O_RDWR)
    check(not can_ofd(fa2), "b keeps the lock")
    check(os.pread(fa2, 4, 0) == b"lock", "a new open file on a works")
    os.close(fa)
    os.close(fb)
    # A power cut leaves the locks of the dead 'host' until its lease ends.
    check(eventually(lambda: can_ofd(fa2)), "a takes it again once b closed")
    a.ctl("powercut")
    fb = os.open(b.p("lk"), os.O_RDWR)
    t0 = time.monotonic()
    check(not can_ofd(fb), "after a's power cut its lock still holds")
    while not can_ofd(fb) and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    took = time.monotonic() - t0
    check(0.5 < took < 2.5, f"and lapses with the lease ({took:.2f} s)")
    os.close(fa2)
    os.close(fb)
    a.ctl("lease 5")


def test_log(logdir):
    lines = [ln.split() for ln in open(os.path.join(logdir, "writes.log"))]
    seqs = [int(ln[0]) for ln in lines]
    check(len(seqs) == len(set(seqs)) and len(seqs) > 20, "unique sequence numbers")
    check(all(ln[2] in ("a", "b") for ln in lines), "every line names its mount")
    ops = {ln[4] for ln in lines}
    check({"write", "sync", "create", "trunc", "rename", "powercut", "ctl"} <= ops,
          f"writes, syncs, tree changes and commands are logged: {sorted(ops)}")
    first = {}
    for ln in lines:
        if ln[4] == "write":
            first.setdefault((ln[2], ln[-1]), int(ln[0]))
    check(first.get(("a", "/f")) is not None and ("b", "/f") not in first,
          "writes are attributed to their mount")


def test_warrend(a, back):
    if not os.environ.get("WARREND"):
        print("warrend part skipped: WARREND is not set")
        return
    try:
        import pika  # noqa: F401
        from conf_broker import ConfBroker
    except ImportError as e:
        print(f"warrend part skipped: {e.name} is not installed")
        return
    root = tempfile.mkdtemp(prefix="warren-testfs-broker-")
    data = a.p("warren-data")
    w = None
    try:
        w = ConfBroker(root, [f"data_dir = {data}"])
        conn = w.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("q", durable=True)
        ch.basic_publish("", "q", b"through fuse", pika.BasicProperties(delivery_mode=2))
        method, _props, body = ch.basic_get("q", auto_ack=True)
        check(method is not None and body == b"through fuse", "warrend publishes and gets")
        ch.basic_publish("", "q", b"kept", pika.BasicProperties(delivery_mode=2))
        conn.close()
        check(w.stop(), "warrend stops cleanly")
        w = None
        check(os.path.getsize(os.path.join(back, "warren-data", "data.mdb")) > 0,
              "data.mdb reached the backing directory")
        if shutil.which("mdb_stat"):
            r = subprocess.run(["mdb_stat", "-e", data], capture_output=True, text=True)
            check(r.returncode == 0 and "Page size" in r.stdout,
                  f"mdb_stat reads the environment through the mount: {r.stderr}")
        w = ConfBroker(root, [f"data_dir = {data}"])
        conn = w.connect()
        method, _props, body = conn.channel().basic_get("q", auto_ack=True)
        check(body == b"kept", "the persistent message is there after a restart")
        conn.close()
        check(w.stop(), "warrend stops cleanly again")
        w = None
    finally:
        if w is not None:
            w.proc.kill()
            w.proc.wait()
            print(w.log_text()[-3000:], file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)


def main():
    if not TESTFS or not os.access(TESTFS, os.X_OK):
        skip("warren-testfs is not built (apt-get install libfuse3-dev fuse3)")
    if not shutil.which("fusermount3"):
        skip("fusermount3 is missing (apt-get install fuse3)")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        skip("/dev/fuse is missing or not usable by this user")
    # meson stops a test that overruns with SIGTERM: unmount on the way out even then
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    root = tempfile.mkdtemp(prefix="warren-testfs-")
    back, logdir = os.path.join(root, "backing"), os.path.join(root, "log")
    os.makedirs(back)
    os.makedirs(logdir)
    mounts = []
    try:
        try:
            mounts.append(Mount(root, back, "a", logdir))
        except RuntimeError as e:
            skip(f"FUSE mounts do not work here: {e}")
        mounts.append(Mount(root, back, "b", logdir))
        a, b = mounts
        for name, fn in [("passthrough", lambda: test_passthrough(a, b, back)),
                         ("powercut", lambda: test_powercut(a, b, back)),
                         ("eio", lambda: test_eio(a, b)),
                         ("freeze", lambda: test_freeze(a, b, logdir)),
                         ("locks", lambda: test_locks(a, b)),
                         ("lease", lambda: test_lease(a, b, back)),
                         ("log", lambda: test_log(logdir)),
                         ("warrend", lambda: test_warrend(a, back))]:
            before = len(failures)
            t0 = time.monotonic()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 — one part failing must not stop the rest
                check(False, f"{name}: {type(e).__name__}: {e}")
                for m in mounts:
                    m.ctl("thaw", "ok", "lease 5")
            print(f"{name}: {'ok' if len(failures) == before else 'FAILED'} "
                  f"({time.monotonic() - t0:.1f} s)")
    finally:
        for m in mounts:
            m.unmount()
        for m in mounts:
            check(not os.path.ismount(m.path), f"{m.name} unmounted")
        if failures:
            for m in mounts:
                with open(os.path.join(root, m.name + ".log")) as f:
                    print(f"--- {m.name}.log\n{f.read()[-2000:]}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("ha-testfs: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
