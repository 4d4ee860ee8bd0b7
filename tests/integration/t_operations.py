"""
Operating porterd as a system daemon. SIGHUP: porterd reads its config file and directory again, swaps them in
when they are valid, keeps the old ones (and says why, with file:line)
when not, and keeps serving throughout; sessions already open finish
with the config they began with. Also systemd's notification protocol
(READY, RELOADING, STOPPING) through a NOTIFY_SOCKET of our own, and
`porterd -t` resolving the user it would switch to.
"""
import os
import socket
import subprocess
import time

from harness import (Client, Failure, check, check_config_refused, check_eq, porterd_check,
                     reload_and_wait, write_fixture)

NEWBIE = b"250 2.1.5 New Person <newbie@example.test>\r\n"
NO_NEWBIE = b"550 5.1.1 <newbie>: no such user here\r\n"


def vrfy(ctx, d, arg):
    with ctx.base.session(ctx, ("127.0.0.1", d.port)) as c:
        r = c.cmd(b"VRFY " + arg + b"\r\n")
        ctx.base.quit_session(c)
    return r


def t_reload_valid(ctx, base):
    """A changed table and config are in force for new sessions; a
    session opened before keeps its answers; mail of new sessions goes
    to the new maildir."""
    table = write_fixture(ctx, "reload.table", base.TABLE)
    d = ctx.start_daemon("reload", directories=[f"table {table}"])
    old = base.session(ctx, ("127.0.0.1", d.port))
    try:
        check_eq(vrfy(ctx, d, b"newbie"), NO_NEWBIE, "VRFY newbie before")
        write_fixture(ctx, "reload.table", base.TABLE.replace(
            "jones                  user     Fred Jones\n", "") +
            "newbie                 user     New Person\n")
        conf = open(d.config).read().replace("banner      porterd", "banner      reloaded")
        conf = conf.replace("reload-mail/%d/%u", "reload-mail2/%d/%u")
        with open(d.config + ".new", "w") as f:
            f.write(conf)
        os.replace(d.config + ".new", d.config)
        ctx.base.daemon_owned_dir(ctx.path("reload-mail2"))
        line = reload_and_wait(d, 1)
        check(b"entries=%d" % base.TABLE_ENTRIES in line, f"entry count in {line!r}")
        with Client(("127.0.0.1", d.port)) as c:
            check_eq(c.reply(), b"220 mail.example.test ESMTP reloaded\r\n",
                     "greeting after the reload")
            check_eq(c.cmd(b"VRFY newbie\r\n"), NEWBIE, "VRFY newbie after the reload")
            check_eq(c.cmd(b"VRFY jones\r\n"), b"550 5.1.1 <jones>: no such user here\r\n",
                     "VRFY jones after it was removed")
            mail_one(c, "newbie")
            ctx.base.quit_session(c)
        # the session opened before still has the old config
        check_eq(old.cmd(b"VRFY jones\r\n"), base.JONES, "old session: VRFY jones")
        check_eq(old.cmd(b"VRFY newbie\r\n"), NO_NEWBIE, "old session: VRFY newbie")
        mail_one(old, "jones")
        ctx.base.quit_session(old)
    finally:
        old.close()
        rc = d.stop()
    check_eq(rc, 0, "exit status")
    check_eq(count_new(ctx.path("reload-mail2/example.test/newbie")), 1,
             "the new session's message, in the new maildir")
    check_eq(count_new(ctx.path("reload-mail/example.test/jones")), 1,
             "the old session's message, in the old maildir")


def mail_one(c, rcpt):
    check_eq(c.cmd(b"RSET\r\n")[:3], b"250", "RSET")
    c.send(b"HELO client.example.org\r\n")
    check_eq(c.reply()[:3], b"250", "HELO")
    check_eq(c.cmd(b"MAIL FROM:<a@example.org>\r\n")[:3], b"250", "MAIL")
    check_eq(c.cmd(b"RCPT TO:<%s@example.test>\r\n" % rcpt.encode())[:3], b"250", "RCPT")
    check_eq(c.cmd(b"DATA\r\n")[:3], b"354", "DATA")
    check_eq(c.cmd(b"Subject: reload\r\n\r\nbody\r\n.\r\n")[:3], b"250", "end of data")


def count_new(maildir):
    try:
        return len(os.listdir(os.path.join(maildir, "new")))
    except FileNotFoundError:
        return 0


def t_reload_broken(ctx, base):
    """A broken table, then a broken config: the error is logged with
    file:line, the old answers stay, the daemon keeps serving; fixing
    the file and reloading again works."""
    table = write_fixture(ctx, "broken.table", base.TABLE)
    d = ctx.start_daemon("broken", directories=[f"table {table}"])
    try:
        write_fixture(ctx, "broken.table", base.TABLE + "newbie  employee  New Person\n")
        line = reload_and_wait(d, 1, "event=reload_failed")
        lineno = base.TABLE.count("\n") + 1
        check(f"{table}:{lineno}:".encode() in line, f"file:line in {line!r}")
        check(b"kept=old" in line, f"kept=old in {line!r}")
        check_eq(vrfy(ctx, d, b"jones"), base.JONES, "VRFY jones after a failed reload")
        check_eq(vrfy(ctx, d, b"newbie"), NO_NEWBIE, "VRFY newbie after a failed reload")

        good = open(d.config).read()
        with open(d.config, "a") as f:
            f.write("no_such_directive yes\n")
        line = reload_and_wait(d, 2, "event=reload_failed")
        check(f"{d.config}:{good.count(chr(10)) + 1}:".encode() in line,
              f"config file:line in {line!r}")
        check_eq(vrfy(ctx, d, b"jones"), base.JONES, "VRFY jones after a broken config")

        with open(d.config, "w") as f:
            f.write(good)
        write_fixture(ctx, "broken.table", base.TABLE + "newbie  user  New Person\n")
        reload_and_wait(d, 3)
        check_eq(vrfy(ctx, d, b"newbie"), NEWBIE, "VRFY newbie once fixed")
    finally:
        rc = d.stop()
    check_eq(rc, 0, "exit status")


def t_reload_restart_only(ctx, base):
    """A changed listen line cannot be applied without a restart: the
    running listeners stay, the rest of the file is applied, a warning
    says which directives were kept."""
    d = ctx.start_daemon("keep")
    try:
        conf = open(d.config).read()
        port2 = ctx.base.free_port(False)
        conf = conf.replace(f":{d.port}", f":{port2}").replace("porterd\n", "kept\n", 1)
        with open(d.config, "w") as f:
            f.write(conf)
        reload_and_wait(d, 1)
        d.wait_log(rb'event=reload_kept directives="listen"', timeout=5)
        with Client(("127.0.0.1", d.port)) as c:
            check_eq(c.reply(), b"220 mail.example.test ESMTP kept\r\n",
                     "greeting on the old port after the reload")
            ctx.base.quit_session(c)
        try:
            socket.create_connection(("127.0.0.1", port2), timeout=1).close()
            raise Failure(f"port {port2} of the reloaded file was bound")
        except OSError:
            pass
    finally:
        rc = d.stop()
    check_eq(rc, 0, "exit status")


def big_table(n):
    lines = [TABLE_HEAD]
    lines += [f"user{i:07d}  user  Person Number{i}\n" for i in range(n)]
    return "".join(lines)


TABLE_HEAD = "jones  user  Fred Jones\npostmaster  user  Postmaster\n"


def t_reload_under_load(ctx, base):
    """Reloads of a 100,000-entry table while 1,000 sessions are open at
    once (5,000 in all, each EHLO, 3 VRFY, QUIT): every session completes
    with the right replies, and each reload is swapped in."""
    if ctx.bench is None:
        raise Failure("needs the load generator (--bench)")
    table = write_fixture(ctx, "load.table", big_table(100000))
    d = ctx.start_daemon("hupload", directories=[f"table {table}"])
    argv = [os.path.join(ctx.bench, "load"), "session", "-p", str(d.port), "-t", "60",
            "-c", "1000", "-n", "5000", "-k", "3", "-a", "jones,user0099999,postmaster"]
    reloads = 0
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and reloads < 20:
                reloads += 1
                reload_and_wait(d, reloads)
            out, err = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        res = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
        check_eq((proc.returncode, res.get("done"), res.get("errors")), (0, "5000", "0"),
                 f"load during reloads: exit, done, errors ({out!r} {err!r})")
        check(reloads >= 2, f"only {reloads} reloads happened during the load")
    finally:
        rc = d.stop()
    check_eq(rc, 0, "exit status")


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket, NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)   # the daemon sends after dropping root
        self.messages = []

    def wait_for(self, text, timeout=10, count=1):
        """Wait until count messages hold text."""
        deadline = time.monotonic() + timeout
        while sum(text in m for m in self.messages) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"no {text!r} (x{count}) from porterd; got {self.messages!r}")
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()
        os.unlink(self.path)


def t_notify(ctx, base):
    """READY=1 once serving, RELOADING=1 then READY=1 around a SIGHUP,
    STOPPING=1 at SIGTERM."""
    with open(ctx.binary, "rb") as f:
        if b"sd_notify" not in f.read():
            raise Failure("porterd was built without libsystemd")
    n = NotifySocket(ctx.path("notify.sock"))
    try:
        d = ctx.start_daemon("notify", env={"NOTIFY_SOCKET": n.path})
        try:
            n.wait_for("READY=1")
            check(n.messages[0].startswith("READY=1"), f"first message {n.messages!r}")
            reload_and_wait(d, 1)
            n.wait_for("RELOADING=1")
            i = next(i for i, m in enumerate(n.messages) if "RELOADING=1" in m)
            check("MONOTONIC_USEC=" in n.messages[i], f"MONOTONIC_USEC in {n.messages[i]!r}")
            n.wait_for("READY=1", count=2)
            check("STATUS=serving" in n.messages[-1], f"status after reload {n.messages!r}")
        finally:
            rc = d.stop()
        n.wait_for("STOPPING=1")
        check_eq(rc, 0, "exit status")
    finally:
        n.close()


def t_check_unknown_user(ctx, base):
    """As root, -t resolves user and group: a typo fails the check that
    ExecStartPre and ExecReload run, not the start."""
    for directive, word in (("user", "no-such-user-porterd"), ("group", "no-such-group-porterd")):
        text = base.config_text(base.free_port(False), False).replace(
            f"{directive} ", f"#{directive} ") + f"{directive} {word}\n"
        conf, r = porterd_check(ctx, "badpriv", text)
        check_config_refused(r, f"{conf}: {directive} {word}: no such {directive}".encode())


def run(ctx, runner, base):
    ctx.base = base
    r = runner.run
    r("reload_valid", t_reload_valid, ctx, base)
    r("reload_broken", t_reload_broken, ctx, base)
    r("reload_restart_only", t_reload_restart_only, ctx, base)
    r("reload_under_load", t_reload_under_load, ctx, base)
    r("notify", t_notify, ctx, base)
    if base.AS_ROOT:
        r("check_unknown_user", t_check_unknown_user, ctx, base)
    else:
        runner.skip("check_unknown_user", "user and group are resolved only as root")
