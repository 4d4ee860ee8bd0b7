"""The lmdb directory backend and porterd-makemap, run as programs.

porterd-makemap (built beside the porterd under test) compiles a table
into a map: quietly on success; on a table error it says PATH:LINE, exits
1 and leaves no file behind. A daemon with `directory lmdb MAP` answers
VRFY, EXPN and RCPT exactly as the table backend does for the same table,
and a map rebuilt while it runs is answered from within seconds, with no
signal sent.
"""

import os
import signal
import subprocess
import time

from harness import Failure, check, check_eq, count_replies

REBUILD_LIMIT = 5.0     # seconds a rebuilt map may take to be answered from


def makemap_binary(ctx):
    return os.path.join(os.path.dirname(ctx.binary), "porterd-makemap")


def makemap(ctx, args, what):
    try:
        r = subprocess.run([makemap_binary(ctx)] + args, capture_output=True,
                           timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failure(f"porterd-makemap {' '.join(args)} did not exit in 30 s")
    ctx.outputs.append((what, r.stdout + r.stderr))
    return r


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def leftovers(directory, prefix):
    """Files of a build other than the table and the map: none may stay."""
    return sorted(f for f in os.listdir(directory)
                  if f.startswith(prefix) and ".tmp-" in f)


def build_ok(ctx, table, out=None):
    args = ([] if out is None else ["-o", out]) + [table]
    r = makemap(ctx, args, f"porterd-makemap {table}")
    check_eq((r.returncode, r.stdout, r.stderr), (0, b"", b""),
             f"porterd-makemap {' '.join(args)}: exit status, stdout, stderr")
    return out or table + ".lmdb"


def t_makemap_success(ctx, base):
    table = ctx.path("lmdb-ok.table")
    write(table, base.TABLE)
    out = build_ok(ctx, table)
    check(os.path.isfile(out), f"{out} was not made")
    other = build_ok(ctx, table, ctx.path("lmdb-other.map"))
    check(os.path.isfile(other), f"{other} was not made")
    r = makemap(ctx, ["-v", table], "porterd-makemap -v")
    check_eq(r.returncode, 0, f"porterd-makemap -v: {r.stderr!r}")
    check(r.stdout.startswith(f"porterd-makemap: {out}: {base.TABLE_ENTRIES} entries,"
                              .encode()), f"-v says {r.stdout!r}")
    check_eq(leftovers(ctx.tmp, "lmdb-"), [], "files left by the builds")


def t_makemap_table_error(ctx, base):
    table = ctx.path("lmdb-bad.table")
    out = table + ".lmdb"
    write(table, "jones   user   Fred Jones\n\nsmith   usr    Fred Smith\n")
    r = makemap(ctx, [table], "porterd-makemap bad table")
    check_eq(r.returncode, 1, "exit status")
    check_eq(r.stderr.decode(), f"porterd-makemap: {table}:3: unknown kind 'usr' "
             "(expected user, list, forward or moved)\n", "stderr")
    check_eq(r.stdout, b"", "stdout")
    check(not os.path.exists(out), f"{out} was made from a bad table")
    # A good map made before stays as it was.
    write(table, "jones   user   Fred Jones\n")
    build_ok(ctx, table)
    with open(out, "rb") as f:
        before = f.read()
    write(table, "jones   user   Fred Jones\njones   user   Again\n")
    r = makemap(ctx, [table], "porterd-makemap duplicate key")
    check_eq((r.returncode, r.stderr.decode()),
             (1, f"porterd-makemap: {table}:2: duplicate key 'jones' (first on line 1)\n"),
             "exit status and stderr")
    with open(out, "rb") as f:
        check(f.read() == before, f"{out} changed after a failed build")
    check_eq(leftovers(ctx.tmp, "lmdb-bad"), [], "files left by the failed builds")


def t_makemap_usage(ctx, base):
    for args in ([], ["a", "b"], ["-x", "a"], ["-o", "", "a"]):
        r = makemap(ctx, args, "porterd-makemap usage")
        check_eq(r.returncode, 1, f"exit status of porterd-makemap {args}")
        check(b"usage: porterd-makemap [-hvV] [-o output] table\n" in r.stderr,
              f"stderr {r.stderr!r}")
    r = makemap(ctx, ["-h"], "porterd-makemap -h")
    check_eq(r.returncode, 0, "exit status of -h")
    check(r.stdout.startswith(b"usage: porterd-makemap"), f"stdout {r.stdout!r}")


def t_makemap_signal(ctx, base):
    """SIGTERM while the map is being written: the half-built file goes,
    the old map stays, and the signal ends the program."""
    table = ctx.path("lmdb-sig.table")
    out = table + ".lmdb"
    write(table, "jones   user   Fred Jones\n")
    build_ok(ctx, table)
    with open(out, "rb") as f:
        before = f.read()
    with open(table, "w", encoding="ascii") as f:
        f.writelines(f"user{i} user Given{i % 1000} Family{i // 1000}\n"
                     for i in range(500000))
    p = subprocess.Popen([makemap_binary(ctx), table], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not leftovers(ctx.tmp, "lmdb-sig"):
            check(p.poll() is None, "porterd-makemap ended before its file was seen")
            check(time.monotonic() < deadline, "no file being built after 20 s")
            time.sleep(0.005)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check_eq(rc, -signal.SIGTERM, "exit status")
    check_eq(leftovers(ctx.tmp, "lmdb-sig"), [], "files left after SIGTERM")
    with open(out, "rb") as f:
        check(f.read() == before, f"{out} changed by a build that was stopped")
    os.unlink(table)


def check_rows(ctx, base, daemon, rows, what):
    """Each row on a fresh session: the data in, exactly want out."""
    for name, prelude, data, want in rows:
        with base.session(ctx, ("127.0.0.1", daemon.port)) as c:
            if prelude is not None:
                c.send(prelude[0])
                check_eq(c.replies(count_replies(prelude[1])), prelude[1],
                         f"{what} {name}: replies to the prelude")
            c.send(data)
            check_eq(c.replies(count_replies(want)), want, f"{what} {name}: replies")
            base.quit_session(c)


def directory_rows(base):
    """The suite's VRFY, EXPN and RCPT rows: they need the directory."""
    rows = [(name, None, data, want) for name, data, want in base.DIALOGUE
            if data[:4] in (b"VRFY", b"EXPN")]
    rows += [row for row in base.MAIL_DIALOGUE
             if row[0].startswith("rcpt_") or row[0].startswith("data_no_valid")]
    return rows


def t_lmdb_daemon(ctx, base):
    """The table's answers, from its map; and the same from both
    backends for every key and name of the table."""
    table = ctx.path("lmdb-daemon.table")
    write(table, base.TABLE)
    out = build_ok(ctx, table)
    d = ctx.start_daemon("lmdb", directories=[f"lmdb {out}"])
    t = ctx.start_daemon("lmdb-table", directories=[f"table {table}"])
    try:
        d.wait_log(rb"event=directory_open backend=lmdb entries=%d"
                   % base.TABLE_ENTRIES)
        rows = directory_rows(base)
        check(len(rows) > 30, f"only {len(rows)} directory rows")
        check_rows(ctx, base, d, rows, "lmdb")
        words = set()
        for line in base.TABLE.splitlines():
            if line and not line[0].isspace() and not line.startswith("#"):
                key, kind, *rest = line.split()
                words.add(key)
                words.update(rest)
                words.add(" ".join(rest))
        queries = sorted(w for w in words if w and "," not in w)
        for verb in (b"VRFY", b"EXPN"):
            for q in queries:
                line = verb + b" " + q.encode() + b" SMTPUTF8\r\n"
                got = []
                for daemon in (t, d):
                    with base.session(ctx, ("127.0.0.1", daemon.port)) as c:
                        got.append(c.cmd(line))
                        base.quit_session(c)
                check_eq(got[1], got[0], f"{line!r}: lmdb's reply against table's")
    finally:
        rc_d, rc_t = d.stop(), t.stop()
    check_eq((rc_d, rc_t), (0, 0), f"exit status after SIGTERM (log {d.log_tail()})")


def t_lmdb_rebuild_while_running(ctx, base):
    table = ctx.path("lmdb-live.table")
    write(table, base.TABLE)
    out = build_ok(ctx, table)
    d = ctx.start_daemon("lmdb-live", directories=[f"lmdb {out}"])
    moved = b"551 5.1.6 User not local; please try <jones@newco.example>\r\n"
    try:
        with base.session(ctx, ("127.0.0.1", d.port)) as c:
            check_eq(c.cmd(b"VRFY jones\r\n"), base.JONES, "VRFY jones before")
            write(table, base.TABLE.replace("jones                  user     Fred Jones",
                                            "jones                  moved    "
                                            "jones@newco.example"))
            build_ok(ctx, table)
            t0 = time.monotonic()
            while True:
                got = c.cmd(b"VRFY jones\r\n")
                took = time.monotonic() - t0
                if got == moved:
                    break
                check_eq(got, base.JONES, f"VRFY jones {took:.1f} s after the rebuild")
                check(took < REBUILD_LIMIT,
                      f"the rebuilt map not answered from after {took:.1f} s")
                time.sleep(0.1)
            base.quit_session(c)
        d.wait_log(rb"event=lmdb_reopen path=\"[^\"]*lmdb-live.table.lmdb\" entries=%d"
                   % base.TABLE_ENTRIES)
        check(b"signal=" not in d.log() and b"reload" not in d.log(),
              f"a signal or a reload in the log: {d.log_tail()}")
        # A reload opens the same map again beside the one in use.
        os.kill(d.pid, signal.SIGHUP)
        d.wait_log(rb"event=reload path=")
        with base.session(ctx, ("127.0.0.1", d.port)) as c:
            check_eq(c.cmd(b"VRFY jones\r\n"), moved, "VRFY jones after a reload")
            base.quit_session(c)
    finally:
        rc = d.stop()
    check_eq(rc, 0, f"exit status after SIGTERM (log {d.log_tail()})")


def t_lmdb_missing_map(ctx, base):
    """porterd -t with a map that is not there names it."""
    conf = ctx.path("lmdb-missing.conf")
    missing = ctx.path("no-such.lmdb")
    write(conf, base.config_text(9, False, directories=[f"lmdb {missing}"]))
    r = base.run_porterd(ctx, ["-t", "-c", conf], "-t lmdb missing map")
    check_eq(r.returncode, 1, "exit status")
    check(f"porterd: {missing}: No such file or directory\n".encode() in r.stderr,
          f"stderr {r.stderr!r}")


def run(ctx, runner, base):
    r = runner.run
    r("lmdb_makemap_success", t_makemap_success, ctx, base)
    r("lmdb_makemap_table_error", t_makemap_table_error, ctx, base)
    r("lmdb_makemap_usage", t_makemap_usage, ctx, base)
    r("lmdb_makemap_signal", t_makemap_signal, ctx, base)
    r("lmdb_daemon_answers", t_lmdb_daemon, ctx, base)
    r("lmdb_rebuild_while_running", t_lmdb_rebuild_while_running, ctx, base)
    r("lmdb_missing_map", t_lmdb_missing_map, ctx, base)
