"""
The passwd backend on a real daemon: accounts of a passwd(5) file (file=,
min_uid=1000) answer VRFY by account and by full name, EXPN, and take
mail into their Maildirs; in a chain with a table, the earlier backend
wins; `porterd -t` names the config's file:line for a bad parameter. The
accounts are read at start, before porterd gives up root, and again by
each SIGHUP reload, as the user porterd runs as.
"""
import os
import pwd
import re

from harness import (check, check_config_ok, check_config_refused, check_eq, line_number,
                     porterd_check, reload_and_wait, stop_ok, write_fixture)

# Accounts of a test system; root, daemon and nobody are outside the range.
PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
jones:x:1000:1000:Fred Jones,Room 101,555-1234,,:/home/jones:/bin/bash
carol:x:1001:1001:& Example,,,:/home/carol:/bin/bash
anna:x:1002:1002:Anna Gourzenkyinplatz:/home/anna:/bin/bash
boris:x:1003:1003:Boris Gourzenkyinplatz:/home/boris:/bin/bash
qsmith:x:1004:1004:Q. Passwd Smith:/home/qsmith:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
PASSWD_ADDRESSES = 5

JONES = b"250 2.1.5 Fred Jones <jones@example.test>\r\n"
CAROL = b"250 2.1.5 Carol Example <carol@example.test>\r\n"
QSMITH_PASSWD = b"250 2.1.5 Q. Passwd Smith <qsmith@example.test>\r\n"
AMBIGUOUS = b"553 5.1.4 User ambiguous\r\n"
EXPN_AMBIGUOUS = b"550 5.1.4 User ambiguous\r\n"


def unknown(name):
    return b"550 5.1.1 <%s>: no such user here\r\n" % name


def write_passwd(ctx, name, text=PASSWD, mode=0o644):
    """The fixture, readable by the daemons (nobody, when run as root)
    unless mode says otherwise."""
    return write_fixture(ctx, name, text, mode)


def t_passwd_vrfy_expn(ctx, base):
    d = ctx.start_daemon("passwd", directories=[
        f"passwd file={write_passwd(ctx, 'passwd.fixture')} min_uid=1000"])
    try:
        base.ask_all(ctx, d, [
            (b"VRFY jones\r\n", JONES),
            (b"VRFY JONES\r\n", JONES),
            (b"VRFY <jones@example.test>\r\n", JONES),
            (b"VRFY carol\r\n", CAROL),                 # & in GECOS
            (b"VRFY Example\r\n", CAROL),               # a word of a name
            (b"VRFY Fred Jones\r\n", JONES),            # the whole name
            (b"VRFY Gourzenkyinplatz\r\n", AMBIGUOUS),
            (b"VRFY Anna Gourzenkyinplatz\r\n",
             b"250 2.1.5 Anna Gourzenkyinplatz <anna@example.test>\r\n"),
            (b"VRFY Room\r\n", unknown(b"Room")),       # after the comma
            (b"VRFY root\r\n", unknown(b"root")),       # uid 0 < min_uid
            (b"VRFY nobody\r\n", unknown(b"nobody")),   # uid 65534 > max_uid
            (b"EXPN jones\r\n", JONES),
            (b"EXPN carol@example.test\r\n", CAROL),
            (b"EXPN Gourzenkyinplatz\r\n", EXPN_AMBIGUOUS),
            (b"EXPN root\r\n", unknown(b"root")),
        ])
        check(re.search(rb"event=directory_open backend=passwd entries=%d\b"
                        % PASSWD_ADDRESSES, d.log()),
              f"no directory_open line with {PASSWD_ADDRESSES} entries: {d.log_tail()}")
    finally:
        stop_ok(d)


def t_passwd_mail(ctx, base):
    d = ctx.start_daemon("passwd-mail", directories=[
        f"passwd file={write_passwd(ctx, 'passwd-mail.fixture')} min_uid=1000"])
    try:
        c = base.mail_session(ctx, d)
        with c:
            body = b"Subject: to an account\r\n\r\nHello, Carol.\r\n"
            qid = base.send_mail(c, ["carol@example.test"], body)
            base.expect_delivered(ctx, d.store, qid, ["carol@example.test"], body)
            check_eq(c.cmd(b"MAIL FROM:<a@example.org>\r\n"), base.MAIL_OK, "MAIL")
            check_eq(c.cmd(b"RCPT TO:<root@example.test>\r\n")[:10], b"550 5.1.1 ",
                     "RCPT to root, outside the uid range")
            check_eq(c.cmd(b"RSET\r\n"), base.OK, "RSET")
            base.quit_session(c)
        check_eq(sorted(d.store.mailboxes()), ["carol@example.test"],
                 "mailboxes written")
    finally:
        stop_ok(d)


def t_passwd_chain_order(ctx, base):
    """qsmith is in both: the backend written first answers."""
    fixture = write_passwd(ctx, "passwd-chain.fixture")
    passwd = f"passwd file={fixture} min_uid=1000"
    d = ctx.start_daemon("passwd-behind", directories=["table directory.table", passwd])
    try:
        base.ask_all(ctx, d, [
            (b"VRFY qsmith\r\n", base.QSMITH),      # the table's Quincy Smith
            (b"VRFY carol\r\n", CAROL),             # only in passwd
            (b"VRFY Example\r\n", CAROL),
            (b"VRFY bob\r\n", base.FORWARD),        # only in the table
            (b"VRFY Passwd\r\n", QSMITH_PASSWD),    # the table has no such name
            (b"VRFY root\r\n", unknown(b"root")),
        ])
    finally:
        stop_ok(d)
    d = ctx.start_daemon("passwd-before", directories=[passwd, "table directory.table"])
    try:
        base.ask_all(ctx, d, [
            (b"VRFY qsmith\r\n", QSMITH_PASSWD),
            (b"VRFY bob\r\n", base.FORWARD),
        ])
    finally:
        stop_ok(d)


def check_bad(ctx, base, name, directory, message):
    conf, r = porterd_check(ctx, name, base.config_text(9, False, directories=[directory]))
    want = message.format(where=f"{conf}:{line_number(conf, directory)}")
    check_config_refused(r, f"porterd: {want}\n".encode())
    check_eq(r.stderr.decode(), f"porterd: {want}\n", "stderr")


def t_passwd_check_bad_parameter(ctx, base):
    check_bad(ctx, base, "passwd-min-uid", "passwd min_uid=abc",
              "{where}: directory passwd: min_uid: not a number: 'abc'")
    check_bad(ctx, base, "passwd-unknown", "passwd file=/etc/passwd shell=/bin/sh",
              "{where}: directory passwd: unknown parameter 'shell' "
              "(known: min_uid, max_uid, hide_nologin, file)")
    check_bad(ctx, base, "passwd-range", "passwd min_uid=2000 max_uid=1000",
              "{where}: directory passwd: min_uid 2000 is above max_uid 1000")


def t_passwd_check_missing_file(ctx, base):
    missing = ctx.path("no-such.passwd")
    check_bad(ctx, base, "passwd-missing", "passwd file=no-such.passwd",
              f"{missing}: No such file or directory")


def t_passwd_check_ok(ctx, base):
    write_passwd(ctx, "passwd-ok.fixture")
    conf, r = porterd_check(ctx, "passwd-ok", base.config_text(9, False, directories=[
        "passwd file=passwd-ok.fixture min_uid=1000",
        "passwd min_uid=0 max_uid=0"]))     # the system's root
    check_config_ok(r, conf, PASSWD_ADDRESSES + 1)


def t_passwd_read_as_root_then_as_user(ctx, base):
    """A file only root may read is read at start, before the privilege
    drop; a reload runs as nobody, cannot read it and keeps the accounts
    it has; once nobody may read it, a reload takes the new accounts."""
    fixture = write_passwd(ctx, "passwd-root.fixture", mode=0o600)
    d = ctx.start_daemon("passwd-root", directories=[f"passwd file={fixture}"])
    newbie = PASSWD + "newbie:x:1005:1005:New Person:/home/newbie:/bin/sh\n"
    try:
        base.ask_all(ctx, d, [(b"VRFY jones\r\n", JONES)])
        with open(f"/proc/{d.pid}/status") as f:
            uids = [ln.split()[1:] for ln in f if ln.startswith("Uid:")][0]
        check_eq(set(uids), {str(pwd.getpwnam("nobody").pw_uid)},
                 "the daemon's uids after the start")
        write_passwd(ctx, "passwd-root.fixture", newbie, mode=0o600)
        line = reload_and_wait(d, 1, what=None)
        check(b"event=reload_failed" in line and
              f"{fixture}: Permission denied".encode() in line and b"kept=old" in line,
              f"reload of a file nobody cannot read: {line!r}")
        base.ask_all(ctx, d, [(b"VRFY jones\r\n", JONES),
                              (b"VRFY newbie\r\n", unknown(b"newbie"))])
        os.chmod(fixture, 0o644)
        line = reload_and_wait(d, 2, what=None)
        check(b"event=reload " in line and b"entries=%d" % (PASSWD_ADDRESSES + 1) in line,
              f"reload once readable: {line!r}")
        base.ask_all(ctx, d, [(b"VRFY newbie\r\n",
                               b"250 2.1.5 New Person <newbie@example.test>\r\n")])
    finally:
        stop_ok(d)


def run(ctx, runner, base):
    r = runner.run
    r("passwd_vrfy_expn", t_passwd_vrfy_expn, ctx, base)
    r("passwd_mail", t_passwd_mail, ctx, base)
    r("passwd_chain_order", t_passwd_chain_order, ctx, base)
    r("passwd_check_bad_parameter", t_passwd_check_bad_parameter, ctx, base)
    r("passwd_check_missing_file", t_passwd_check_missing_file, ctx, base)
    r("passwd_check_ok", t_passwd_check_ok, ctx, base)
    if base.AS_ROOT:
        r("passwd_read_as_root_then_as_user", t_passwd_read_as_root_then_as_user,
          ctx, base)
    else:
        runner.skip("passwd_read_as_root_then_as_user",
                    "needs root: porterd drops privileges only when started as root")
