"""
The aliases backend on a real daemon, in front of the suite's table
(`directory aliases FILE` then `directory table directory.table`): VRFY,
EXPN and RCPT of aliases whose targets are found through the table, a
forward, lists (one from an :include: file), a cycle, and program and
file targets that stand for the alias itself: mail to a list reaches each
member's Maildir, mail to a program or file alias reaches the alias's own
Maildir, and no program text or file path ever appears in a reply or in
the daemon's log. `porterd -t` names a broken aliases file's line.
"""
import re

from harness import (check, check_config_ok, check_config_refused, check_eq, porterd_check,
                     stop_ok, write_fixture)

# What must never be shown: parts of the program, file and :include: names.
SECRETS = (b"secret", b"ticket-tool", b"archive.mbox", b"team.list")

ALIASES = """\
# /etc/aliases of the integration tests, in Debian's style
mailer-daemon: postmaster
postmaster:    root
Root:          jones
fwd:           fwd@elsewhere.example
staff:         jones, qsmith,
               far@elsewhere.example
support:       |/usr/local/bin/secret-ticket-tool --queue help, jones
archive:       /var/spool/secret/archive.mbox
team:          :include:team.list
"help desk":   support
cycle-a:       cycle-b
cycle-b:       cycle-a
"""
ALIASES_COUNT = 11

TEAM = """\
# the team, one a line
jones
hostmaster
"""

ROOT = b"250 2.1.5 <root@example.test>\r\n"
FWD = b"251 2.1.5 User not local; will forward to <fwd@elsewhere.example>\r\n"
EXPN_STAFF = (b"250-2.1.5 Fred Jones <jones@example.test>\r\n"
              b"250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
              b"250 2.1.5 <far@elsewhere.example>\r\n")
EXPN_SUPPORT = (b"250-2.1.5 <support@example.test>\r\n"
                b"250 2.1.5 Fred Jones <jones@example.test>\r\n")


def aliases_daemon(ctx, name):
    write_fixture(ctx, "team.list", TEAM)
    write_fixture(ctx, f"{name}.aliases", ALIASES)
    return ctx.start_daemon(name, directories=[f"aliases {name}.aliases",
                                               "table directory.table"])


def check_no_secrets(what, data):
    for s in SECRETS:
        check(s not in data, f"{what} shows {s!r}: {data[-300:]!r}")


def ask_all(ctx, base, d, rows):
    """Each (command, reply) row on one session of d; no reply may show
    a program or a path."""
    base.ask_all(ctx, d, rows, check_reply=check_no_secrets)


def stop_ok_no_secrets(d):
    """Stop d as stop_ok does; its log may show no program or path."""
    stop_ok(d)
    check_no_secrets("the daemon's log", d.log())


def t_aliases_vrfy_expn(ctx, base):
    d = aliases_daemon(ctx, "aliases")
    try:
        ask_all(ctx, base, d, [
            (b"VRFY root\r\n", ROOT),
            (b"VRFY <Root@Example.Test>\r\n", ROOT),
            (b"VRFY fwd\r\n", FWD),
            (b"VRFY support\r\n", b"250 2.1.5 <support@example.test>\r\n"),
            (b"VRFY archive\r\n", b"250 2.1.5 <archive@example.test>\r\n"),
            (b"VRFY help desk\r\n", b'250 2.1.5 <"help desk"@example.test>\r\n'),
            # a quoted local part with its domain, as RCPT takes it
            (b'VRFY "help desk"@example.test\r\n', b'250 2.1.5 <"help desk"@example.test>\r\n'),
            (b'VRFY <"HELP DESK"@example.test>\r\n', b'250 2.1.5 <"help desk"@example.test>\r\n'),
            (b'VRFY "root"@example.test\r\n', ROOT),
            (b'EXPN "help desk"@example.test\r\n', EXPN_SUPPORT),
            (b"VRFY jones\r\n", base.JONES),            # behind, in the table
            (b"VRFY bob\r\n", base.FORWARD),            # the table's forward
            (b"VRFY nosuch\r\n", b"550 5.1.1 <nosuch>: no such user here\r\n"),
            (b"EXPN root\r\n", base.JONES),
            (b"EXPN mailer-daemon\r\n", base.JONES),    # nested twice
            (b"EXPN fwd\r\n", b"250 2.1.5 <fwd@elsewhere.example>\r\n"),
            (b"EXPN staff\r\n", EXPN_STAFF),
            (b"EXPN support\r\n", EXPN_SUPPORT),
            (b"EXPN archive\r\n", b"250 2.1.5 <archive@example.test>\r\n"),
            (b"EXPN team\r\n", b"250-2.1.5 Fred Jones <jones@example.test>\r\n"
                               b"250 2.1.5 Hostmaster <hostmaster@example.test>\r\n"),
            (b"EXPN help desk\r\n", EXPN_SUPPORT),
            (b"EXPN cycle-a\r\n", b"550 5.1.1 <cycle-a>: list has no members here\r\n"),
        ])
        check(re.search(rb"event=directory_open backend=aliases entries=%d\b"
                        % ALIASES_COUNT, d.log()),
              f"no directory_open line with {ALIASES_COUNT} entries: {d.log_tail()}")
    finally:
        stop_ok_no_secrets(d)


def mail_to(ctx, base, d, c, rcpt, mailboxes):
    body = f"Subject: to {rcpt}\r\n\r\nHello, {rcpt}.\r\n".encode()
    qid = base.send_mail(c, [rcpt], body)
    base.expect_delivered(ctx, d.store, qid, mailboxes, body)


def t_aliases_mail(ctx, base):
    """A list reaches each local member's Maildir (the remote one is
    skipped); a program or file target is the alias's own Maildir."""
    d = aliases_daemon(ctx, "aliases-mail")
    try:
        with base.mail_session(ctx, d) as c:
            mail_to(ctx, base, d, c, "staff@example.test",
                    ["jones@example.test", "qsmith@example.test"])
            mail_to(ctx, base, d, c, "support@example.test",
                    ["support@example.test", "jones@example.test"])
            mail_to(ctx, base, d, c, "archive@example.test", ["archive@example.test"])
            mail_to(ctx, base, d, c, "postmaster@example.test", ["jones@example.test"])
            mail_to(ctx, base, d, c, '"help desk"@example.test',
                    ["support@example.test", "jones@example.test"])
            check_eq(c.cmd(b"MAIL FROM:<a@example.org>\r\n"), base.MAIL_OK, "MAIL")
            got = c.cmd(b"RCPT TO:<fwd@example.test>\r\n")
            check_eq(got, b"551 5.1.6 User not local; please try <fwd@elsewhere.example>\r\n",
                     "RCPT to a forward")
            check_eq(c.cmd(b"RSET\r\n"), base.OK, "RSET")
            base.quit_session(c)
        check_eq(sorted(d.store.mailboxes()),
                 ["archive@example.test", "jones@example.test", "qsmith@example.test",
                  "support@example.test"], "Maildirs written")
        d.wait_log(rb'event=rcpt_skip client=127\.0\.0\.1 list="staff@example\.test" '
                   rb'member="far@elsewhere\.example" reason=remote\n')
        for _, path in d.store.files("new"):
            with open(path, "rb") as f:
                check_no_secrets(f"delivered {path}", f.read())
    finally:
        stop_ok_no_secrets(d)


def t_aliases_check_ok(ctx, base):
    write_fixture(ctx, "team.list", TEAM)
    write_fixture(ctx, "check-ok.aliases", ALIASES)
    conf, r = porterd_check(ctx, "aliases-check-ok", base.config_text(
        9, False, directories=["aliases check-ok.aliases", "table directory.table"]))
    check_config_ok(r, conf, ALIASES_COUNT + base.TABLE_ENTRIES)


def check_broken(ctx, base, name, text, line, message):
    aliases = write_fixture(ctx, f"{name}.aliases", text)
    _, r = porterd_check(ctx, name, base.config_text(
        9, False, directories=[f"aliases {name}.aliases", "table directory.table"]))
    check_config_refused(r, f"porterd: {aliases}:{line}: {message}".encode())
    check_no_secrets("the error", r.stderr)


def t_aliases_check_bad_line(ctx, base):
    check_broken(ctx, base, "aliases-bad-line",
                 "root: jones\nsupport: |/usr/bin/secret-tool, @nowhere\n", 2,
                 "alias 'support': bad address '@nowhere': empty local part")


def t_aliases_check_duplicate(ctx, base):
    check_broken(ctx, base, "aliases-duplicate",
                 "root: jones\n# again, in other case\nROOT: qsmith\n", 3,
                 "duplicate alias 'root' (first on line 1)")


def t_aliases_check_missing_include(ctx, base):
    check_broken(ctx, base, "aliases-missing-include",
                 "root: jones\nlist: :include:nowhere.list\n", 2,
                 f"alias 'list': :include: {ctx.path('nowhere.list')}: "
                 "No such file or directory")


def run(ctx, runner, base):
    r = runner.run
    r("aliases_vrfy_expn", t_aliases_vrfy_expn, ctx, base)
    r("aliases_mail", t_aliases_mail, ctx, base)
    r("aliases_check_ok", t_aliases_check_ok, ctx, base)
    r("aliases_check_bad_line", t_aliases_check_bad_line, ctx, base)
    r("aliases_check_duplicate", t_aliases_check_duplicate, ctx, base)
    r("aliases_check_missing_include", t_aliases_check_missing_include, ctx, base)
