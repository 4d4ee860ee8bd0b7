"""
The answer cache on a real daemon: a table with cache_ttl= and
cache_size= on its `directory` line answers exactly as without them (the
words are taken out before the table sees the line), and when the daemon
stops, and when a reload releases the old config, the log says how many
lookups the cache answered, how many went to the table, and how many
answers it holds. `porterd -t` names the config's file:line for a bad
cache parameter.
"""
import re

from harness import (check_config_ok, check_config_refused, check_eq, line_number,
                     porterd_check, reload_and_wait, stop_ok)

CACHED = "table directory.table cache_ttl=60s cache_size=100"


def cache_lines(log):
    return re.findall(rb"event=directory_cache [^\n]*", log)


def t_dircache_answers_and_counts(ctx, base):
    """Four distinct questions, three of them asked again (one in other
    case): 4 misses, 3 hits, 4 answers held; one line, at SIGTERM."""
    d = ctx.start_daemon("dircache", directories=[CACHED])
    try:
        check_eq(cache_lines(d.log()), [], "cache lines before the stop")
        base.ask_all(ctx, d, [
            (b"VRFY jones\r\n", base.JONES),                # miss
            (b"VRFY jones\r\n", base.JONES),                # hit
            (b"VRFY nobody\r\n", base.NOBODY),              # miss: kept, negative
            (b"VRFY nobody\r\n", base.NOBODY),              # hit
            (b"VRFY JONES\r\n", b"250 2.1.5 Fred Jones <jones@example.test>\r\n"),  # hit
            (b"VRFY jones@example.test\r\n", base.JONES),   # miss: another key
            (b"VRFY bob\r\n", base.FORWARD),                # miss
        ])
    finally:
        stop_ok(d)
    check_eq(cache_lines(d.log()),
             [b"event=directory_cache backend=table hits=3 misses=4 entries=4 position=1"],
             "cache lines at the stop")


def t_dircache_expn_through_cache(ctx, base):
    """EXPN asks for the list, then for each local member: the second
    time every one of those answers comes from the cache, and the reply
    is the same."""
    d = ctx.start_daemon("dircache-expn", directories=[CACHED])
    try:
        base.ask_all(ctx, d, [(b"EXPN example-people\r\n", base.EXAMPLE_PEOPLE)] * 2)
    finally:
        stop_ok(d)
    # example-people, jones, smith, qsmith (postel@usc-isif.example is remote)
    check_eq(cache_lines(d.log()),
             [b"event=directory_cache backend=table hits=4 misses=4 entries=4 position=1"],
             "cache lines at the stop")


def t_dircache_second_in_chain(ctx, base):
    """Behind an uncached table the cache is asked only what the first
    table does not know; one line, for the cached backend alone."""
    d = ctx.start_daemon("dircache-chain", directories=["table directory.table", CACHED])
    try:
        base.ask_all(ctx, d, [
            (b"VRFY nobody\r\n", base.NOBODY),      # first: not found; cache: miss
            (b"VRFY nobody\r\n", base.NOBODY),      # cache: hit
            (b"VRFY jones\r\n", base.JONES),        # first answers
        ])
    finally:
        stop_ok(d)
    check_eq(cache_lines(d.log()),
             [b"event=directory_cache backend=table hits=1 misses=1 entries=1 position=2"],
             "cache lines at the stop")


def t_dircache_reload_releases_old(ctx, base):
    """Each config has caches of its own, empty at its start; the line of
    a config replaced by a reload comes when its last holder lets go
    (here: at the next reload), each of the others' at the stop."""
    d = ctx.start_daemon("dircache-reload", directories=[CACHED])
    try:
        base.ask_all(ctx, d, [(b"VRFY jones\r\n", base.JONES)] * 2)
        reload_and_wait(d, 1)
        base.ask_all(ctx, d, [(b"VRFY jones\r\n", base.JONES)] * 3)
        reload_and_wait(d, 2)
        d.wait_log(rb"event=directory_cache backend=table hits=2 misses=1 ", timeout=20)
    finally:
        stop_ok(d)
    check_eq(sorted(cache_lines(d.log())), [
        b"event=directory_cache backend=table hits=0 misses=0 entries=0 position=1",
        b"event=directory_cache backend=table hits=1 misses=1 entries=1 position=1",
        b"event=directory_cache backend=table hits=2 misses=1 entries=1 position=1",
    ], "cache lines of the three configs")


def t_dircache_check_config(ctx, base):
    """porterd -t: cache parameters are accepted and leave the table's
    count alone; a bad one is the config's error, at its line."""
    conf, r = porterd_check(ctx, "dircache-good",
                            base.config_text(9, False, directories=[CACHED]))
    check_config_ok(r, conf, base.TABLE_ENTRIES)
    check_eq(r.stderr, b"", "stderr")
    conf, r = porterd_check(ctx, "dircache-bad", base.config_text(
        9, False, directories=["table directory.table cache_ttl=0"]))
    want = (f"porterd: {conf}:{line_number(conf, 'cache_ttl=0')}: directory table: "
            f"cache_ttl: '0' is not a time from 1s to 86400s (a number with s, m or h)\n")
    check_config_refused(r, want.encode())


def run(ctx, runner, base):
    r = runner.run
    r("dircache_answers_and_counts", t_dircache_answers_and_counts, ctx, base)
    r("dircache_expn_through_cache", t_dircache_expn_through_cache, ctx, base)
    r("dircache_second_in_chain", t_dircache_second_in_chain, ctx, base)
    r("dircache_reload_releases_old", t_dircache_reload_releases_old, ctx, base)
    r("dircache_check_config", t_dircache_check_config, ctx, base)
