#!/usr/bin/python3
"""The pika examples in docs/sns-sqs.md run against a real warrend (issue 14: "runnable pika
examples"). Every ```python block of the page is a self-contained script that checks its own
results with assert; this test starts one warrend (conf_broker.py), points each block's
pika.ConnectionParameters("localhost") at it, runs the blocks one by one in their own
/usr/bin/python3 process (30 s each) and fails on any that exits non-zero. A block that needs the
broker restarted says so with the line "# docs-test: restart-before" and gets a SIGKILL'd,
restarted warrend (same data directory) before it runs. Exit 0 pass, 1 fail, 77 skip."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import pika  # noqa: F401  (the blocks import it)
    from conf_broker import ConfBroker, check, finish
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-pika python3-requests)")
    sys.exit(77)

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "sns-sqs.md")


def blocks(text):
    """(line number, code) of every ```python block."""
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        out.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return out


def main():
    if not os.environ.get("WARREND"):
        print("SKIP: WARREND is not set")
        return 77
    with open(DOC) as f:
        found = blocks(f.read())
    check(len(found) >= 5, f"docs/sns-sqs.md has {len(found)} python examples, expected several")
    d = tempfile.mkdtemp(prefix="warren-docs-")
    w = None
    try:
        w = ConfBroker(d, [])
        for line, code in found:
            if "# docs-test: restart-before" in code:
                w.proc.kill()
                w.proc.wait()
                w = ConfBroker(d, [], ports=(w.port, w.mport, w.pport))
            src = code.replace('pika.ConnectionParameters("localhost")',
                               f'pika.ConnectionParameters("127.0.0.1", {w.port})')
            try:
                r = subprocess.run(["/usr/bin/python3", "-c", src], capture_output=True,
                                   text=True, timeout=30)
                ok, out = r.returncode == 0, r.stdout + r.stderr
            except subprocess.TimeoutExpired:
                ok, out = False, "timed out after 30 s"
            print(f"docs/sns-sqs.md:{line}: {'ok' if ok else 'FAILED'}")
            check(ok, f"the example at docs/sns-sqs.md:{line} failed:\n{out}")
        check(w.proc.poll() is None, "warrend still running after the examples")
    finally:
        if w and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    return finish("docs-examples")


if __name__ == "__main__":
    sys.exit(main())
