#!/usr/bin/env python3
"""tests/install — `meson install --destdir` into a temp dir (issue 11, "Installing as a service").

Checks that warrend, warrenctl, the sample warren.conf, warren.service and the sysusers.d entry
land where meson's options say; that the unit runs the installed warrend on the installed config
(Type=notify, ExecReload with SIGHUP, the hardening); that the sample names every key
broker/amqp/conf.c accepts, each with its default; and that the installed warrend starts on the
sample as installed (every key commented), with each "#key = value" line uncommented in turn
(the value shown is the default), and with all of them at once. Owns its temp dir.

Environment (set by tests/install/meson.build): MESON, BUILD_ROOT, WARREN_CONF_C, and the
expected absolute paths WARREN_BINDIR, WARREN_CONFDIR, WARREN_UNITDIR, WARREN_SYSUSERSDIR.
Exit 0 = pass, 77 = skip, anything else = fail.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def free_ports(n):
    """n distinct free ports: the sockets are held open together, so the kernel cannot hand
    the same port out twice (one at a time it may, and warrend then finds it taken)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def in_dest(dest, path):
    return os.path.join(dest, path.lstrip("/"))


def run_warrend(exe, conf, tmp, what):
    """Start exe on conf; it must listen, then exit 0 on SIGTERM, logging no error or warning.
    Returns its stderr."""
    data = tempfile.mkdtemp(prefix="data-", dir=tmp)
    port, mport, pport = free_ports(3)
    argv = [exe, "--config", conf, "--data-dir", data, "--port", str(port), "--bind",
            "127.0.0.1", "--management-port", str(mport), "--prometheus-port", str(pport)]
    errf = tempfile.TemporaryFile(dir=tmp)
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errf)
    listened = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            listened = True
            break
        except OSError:
            time.sleep(0.02)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    errf.seek(0)
    err = errf.read().decode(errors="replace")
    errf.close()
    shutil.rmtree(data, ignore_errors=True)
    if not listened or rc != 0 or "[error]" in err or "[warn]" in err:
        sys.stderr.write(err)
        fail("%s: warrend %s (exit status %s)" % (what, "started" if listened else
                                                  "did not start", rc))
    return err


def conf_keys(path):
    """The keys conf.c compares against: exact ones, and the prefixes of KEY.NAME ones."""
    src = open(path).read()
    exact = set(re.findall(r'strcmp\(key, "([^"]+)"\)', src))
    prefixes = set(re.findall(r'strncmp\(key, "([^"]+\.)", \d+\)', src))
    check(exact and prefixes, "found no keys in " + path)
    return exact, prefixes


def main():
    meson = os.environ.get("MESON")
    build = os.environ.get("BUILD_ROOT")
    if not meson or not build:
        print("SKIP: MESON or BUILD_ROOT unset (run through meson test)")
        return 77
    bindir = os.environ["WARREN_BINDIR"]
    confdir = os.environ["WARREN_CONFDIR"]
    unitdir = os.environ["WARREN_UNITDIR"]
    sysusersdir = os.environ["WARREN_SYSUSERSDIR"]
    tmp = tempfile.mkdtemp(prefix="warren-install-")
    try:
        dest = os.path.join(tmp, "dest")
        r = subprocess.run([meson, "install", "-C", build, "--no-rebuild", "--destdir", dest],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout)
            fail("meson install --destdir failed with %d" % r.returncode)

        # The files, where meson's options put them.
        warrend = in_dest(dest, os.path.join(bindir, "warrend"))
        conf = in_dest(dest, os.path.join(confdir, "warren.conf"))
        unit = in_dest(dest, os.path.join(unitdir, "warren.service"))
        sysusers = in_dest(dest, os.path.join(sysusersdir, "warren.conf"))
        check(os.access(warrend, os.X_OK), "no executable " + warrend)
        if os.path.exists(os.path.join(build, "tools", "warrenctl")):
            check(os.access(in_dest(dest, os.path.join(bindir, "warrenctl")), os.X_OK),
                  "warrenctl was built but not installed in " + bindir)
        for f in (conf, unit, sysusers):
            check(os.path.isfile(f), "not installed: " + f)
        print("installed: %s, %s, %s, %s" % (warrend, conf, unit, sysusers))

        # The unit.
        text = open(unit).read()
        lines = [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("#")]
        want = [
            "Type=notify",
            "ExecStart=%s/warrend --config %s/warren.conf" % (bindir, confdir),
            "ExecReload=/bin/kill -HUP $MAINPID",
            "User=warren",
            "StateDirectory=warren",
            "WorkingDirectory=/var/lib/warren",
            "NoNewPrivileges=yes",
            "ProtectSystem=full",
            "ReadWritePaths=-/var/lib/warren",
            "RestartPreventExitStatus=78",
        ]
        for w in want:
            check(w in lines, "warren.service has no line '%s'" % w)
        nofile = [l for l in lines if l.startswith("LimitNOFILE=")]
        check(nofile and int(nofile[0].split("=")[1]) >= 65536, "LimitNOFILE below 65536")
        check("u warren " in open(sysusers).read(), "the sysusers.d entry creates no user warren")
        analyze = shutil.which("systemd-analyze")
        if analyze:
            # On a copy that runs the installed warrend (verify wants ExecStart to exist).
            vdir = os.path.join(tmp, "verify")
            os.mkdir(vdir)
            with open(os.path.join(vdir, "warren.service"), "w") as f:
                f.write(text.replace(os.path.join(bindir, "warrend"), warrend))
            r = subprocess.run([analyze, "verify", os.path.join(vdir, "warren.service")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            check(r.returncode == 0 and "warren.service" not in r.stdout,
                  "systemd-analyze verify: " + r.stdout)
            print("systemd-analyze verify: ok")

        # The sample: every key of conf.c, each with its default.
        sample = open(conf).read()
        exact, prefixes = conf_keys(os.environ["WARREN_CONF_C"])
        setting = re.compile(r"^#([a-z][A-Za-z0-9_.]*) = (.*)$")
        example = re.compile(r"^#   e\.g\. ([a-z][A-Za-z0-9_.]*) = (.*)$")
        shown = set()
        defaults = []  # (line index, key)
        blocks = sample.split("\n\n")
        for block in blocks:
            has_key = False
            for line in block.splitlines():
                m = setting.match(line) or example.match(line)
                if m:
                    shown.add(m.group(1))
                    has_key = True
            check(not has_key or "Default: " in block,
                  "this block of warren.conf does not say its default:\n" + block)
        for i, line in enumerate(sample.splitlines()):
            m = setting.match(line)
            if m:
                defaults.append((i, m.group(1)))
        for k in sorted(exact):
            check(k in shown, "key '%s' (broker/amqp/conf.c) is missing from dist/warren.conf" % k)
        for pre in sorted(prefixes):
            check(any(s.startswith(pre) for s in shown),
                  "no '%sNAME' key (broker/amqp/conf.c) in dist/warren.conf" % pre)
        print("the sample shows all %d keys of conf.c (and %d KEY.NAME families)"
              % (len(exact), len(prefixes)))

        # warrend on the sample: as installed, each default uncommented, all of them.
        run_warrend(warrend, conf, tmp, "the sample as installed")
        print("starts on the sample as installed")
        lines = sample.splitlines()
        for i, key in defaults:
            one = list(lines)
            one[i] = one[i][1:]
            path = os.path.join(tmp, "one.conf")
            with open(path, "w") as f:
                f.write("\n".join(one) + "\n")
            run_warrend(warrend, path, tmp, "with '%s' uncommented" % one[i])
            print("starts with '%s'" % one[i])
        every = list(lines)
        for i, _ in defaults:
            every[i] = every[i][1:]
        path = os.path.join(tmp, "all.conf")
        with open(path, "w") as f:
            f.write("\n".join(every) + "\n")
        run_warrend(warrend, path, tmp, "with every default uncommented")
        print("starts with all %d defaults uncommented" % len(defaults))

        # ... and really reads it: a bad value there stops it with 78 (EX_CONFIG).
        bad = os.path.join(tmp, "bad.conf")
        with open(bad, "w") as f:
            f.write(sample.replace("#heartbeat = 60", "heartbeat = sixty"))
        r = subprocess.run([warrend, "--config", bad, "--data-dir", os.path.join(tmp, "bad")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           timeout=30)
        check(r.returncode == 78 and "heartbeat" in r.stderr,
              "a bad heartbeat in the sample gave exit status %d: %s" % (r.returncode, r.stderr))
        print("PASS")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
