/* DATA framing: terminator, dot-stuffing, smuggling variants, line and
 * size limits, problem precedence — each row fed whole, split in two at
 * every offset, and byte by byte, which must all agree. */
#include "testutil.h"

#include <stdint.h>

#include "porterd/dataread.h"

/* Bytes given as head, then `fill` copies of 'x', then tail; the string
 * lengths come from sizeof so a row may hold NUL bytes. */
struct bytes {
	const char *head;
	size_t headlen;
	size_t fill;
	const char *tail;
	size_t taillen;
};

#define S(str) { str, sizeof(str) - 1, 0, "", 0 }
#define X(head, n, tail) { head, sizeof(head) - 1, n, tail, sizeof(tail) - 1 }
#define NOLIMIT UINT64_MAX

static const struct {
	struct bytes in;
	uint64_t max_size;
	struct bytes body;		/* exactly what `out` must get */
	enum data_problem problem;
	bool done;
	const char *rest;		/* the unconsumed end of in */
} rows[] = {
	/* the end, and nothing else */
	{ S(".\r\n"), NOLIMIT, S(""), DATA_FINE, true, "" },
	{ S(".\r\nQUIT\r\n"), NOLIMIT, S(""), DATA_FINE, true, "QUIT\r\n" },
	{ S("\r\n.\r\n"), NOLIMIT, S("\r\n"), DATA_FINE, true, "" },
	{ S("a\r\n.\r\n"), NOLIMIT, S("a\r\n"), DATA_FINE, true, "" },
	{ S("a\r\n.\r\nQUIT\r\n"), NOLIMIT, S("a\r\n"), DATA_FINE, true, "QUIT\r\n" },
	{ S("a\r\n.\r\n.\r\n"), NOLIMIT, S("a\r\n"), DATA_FINE, true, ".\r\n" },
	{ S("Subject: x\r\n\r\nHello\r\n.\r\n"), NOLIMIT,
	  S("Subject: x\r\n\r\nHello\r\n"), DATA_FINE, true, "" },
	{ S("a\0b\r\n.\r\n"), NOLIMIT, S("a\0b\r\n"), DATA_FINE, true, "" },
	/* not ended yet: everything consumed */
	{ S(""), NOLIMIT, S(""), DATA_FINE, false, "" },
	{ S("a\r\n"), NOLIMIT, S("a\r\n"), DATA_FINE, false, "" },
	{ S("a\r\n."), NOLIMIT, S("a\r\n"), DATA_FINE, false, "" },
	{ S("a\r\n.\r"), NOLIMIT, S("a\r\n"), DATA_FINE, false, "" },
	{ S("a\r"), NOLIMIT, S("a\r"), DATA_FINE, false, "" },
	{ S("a\r\n.\r\r\n"), NOLIMIT, S("a\r\n\r"), DATA_BARE_NEWLINE, false, "" },
	/* dot-stuffing: the first dot of a line goes */
	{ S("..\r\n.\r\n"), NOLIMIT, S(".\r\n"), DATA_FINE, true, "" },
	{ S(".x\r\n.\r\n"), NOLIMIT, S("x\r\n"), DATA_FINE, true, "" },
	{ S("...\r\n.\r\n"), NOLIMIT, S("..\r\n"), DATA_FINE, true, "" },
	{ S(". \r\n.\r\n"), NOLIMIT, S(" \r\n"), DATA_FINE, true, "" },
	{ S("a.b\r\n.\r\n"), NOLIMIT, S("a.b\r\n"), DATA_FINE, true, "" },
	{ S("x.\r\n.\r\n"), NOLIMIT, S("x.\r\n"), DATA_FINE, true, "" },
	{ S(" .\r\n.\r\n"), NOLIMIT, S(" .\r\n"), DATA_FINE, true, "" },
	{ S("a\r\n.. b\r\n..\r\n.\r\n"), NOLIMIT, S("a\r\n. b\r\n.\r\n"),
	  DATA_FINE, true, "" },
	{ S("..\r\n.\r\nRSET\r\n"), NOLIMIT, S(".\r\n"), DATA_FINE, true, "RSET\r\n" },
	{ S(".\r\n\r\n.\r\n"), NOLIMIT, S(""), DATA_FINE, true, "\r\n.\r\n" },
	/* smuggling: bare CR or LF around a dot is message text */
	{ S("body\n.\nMAIL FROM:<x@y>\r\nDATA\r\n.\r\n"), NOLIMIT,
	  S("body"), DATA_BARE_NEWLINE, true, "" },
	{ S("body\r.\rMAIL FROM:<x@y>\r\n.\r\n"), NOLIMIT,
	  S("body\r"), DATA_BARE_NEWLINE, true, "" },
	{ S("body\r.\r\nMAIL FROM:<x@y>\r\n.\r\n"), NOLIMIT,
	  S("body\r"), DATA_BARE_NEWLINE, true, "" },
	{ S("body\r.\nMAIL FROM:<x@y>\r\n.\r\n"), NOLIMIT,
	  S("body\r"), DATA_BARE_NEWLINE, true, "" },
	{ S("body\r\n.\nMAIL FROM:<x@y>\r\n.\r\n"), NOLIMIT,
	  S("body\r\n"), DATA_BARE_NEWLINE, true, "" },
	{ S("body\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"), NOLIMIT,
	  S("body"), DATA_BARE_NEWLINE, true, "" },
	{ S("body\r\n.\rMAIL FROM:<x@y>\r\n.\r\n"), NOLIMIT,
	  S("body\r\n\r"), DATA_BARE_NEWLINE, true, "" },
	{ S("body\n.\r\nMAIL FROM:<x@y>\r\n"), NOLIMIT,
	  S("body"), DATA_BARE_NEWLINE, false, "" },
	{ S("\n.\r\n.\r\nQUIT\r\n"), NOLIMIT, S(""), DATA_BARE_NEWLINE, true, "QUIT\r\n" },
	{ S(".\n.\r\n.\r\n"), NOLIMIT, S(""), DATA_BARE_NEWLINE, true, "" },
	{ S(".\r.\r\n.\r\n"), NOLIMIT, S("\r"), DATA_BARE_NEWLINE, true, "" },
	{ S("\r\n.\n\r\n.\r\n"), NOLIMIT, S("\r\n"), DATA_BARE_NEWLINE, true, "" },
	/* bare CR and LF inside a line */
	{ S("a\rb\r\n.\r\n"), NOLIMIT, S("a\r"), DATA_BARE_NEWLINE, true, "" },
	{ S("a\nb\r\n.\r\n"), NOLIMIT, S("a"), DATA_BARE_NEWLINE, true, "" },
	{ S("\r\r\n.\r\n"), NOLIMIT, S("\r"), DATA_BARE_NEWLINE, true, "" },
	{ S("a\n"), NOLIMIT, S("a"), DATA_BARE_NEWLINE, false, "" },
	/* line length: 1000 octets with CRLF, the stuffed dot not counted */
	{ X("", 998, "\r\n.\r\n"), NOLIMIT, X("", 998, "\r\n"), DATA_FINE, true, "" },
	{ X("", 999, "\r\n.\r\n"), NOLIMIT, X("", 999, "\r"), DATA_LINE_TOO_LONG, true, "" },
	{ X("", 1000, "\r\n.\r\n"), NOLIMIT, X("", 1000, ""), DATA_LINE_TOO_LONG, true, "" },
	{ X(".", 998, "\r\n.\r\n"), NOLIMIT, X("", 998, "\r\n"), DATA_FINE, true, "" },
	{ X(".", 999, "\r\n.\r\n"), NOLIMIT, X("", 999, "\r"), DATA_LINE_TOO_LONG, true, "" },
	{ X("a\r\n", 998, "\r\nb\r\n.\r\n"), NOLIMIT, X("a\r\n", 998, "\r\nb\r\n"),
	  DATA_FINE, true, "" },
	{ X("", 2000, "\r\n.\r\nQUIT\r\n"), NOLIMIT, X("", 1000, ""),
	  DATA_LINE_TOO_LONG, true, "QUIT\r\n" },
	/* size: unstuffed body octets, terminator excluded */
	{ S("abc\r\n.\r\n"), 5, S("abc\r\n"), DATA_FINE, true, "" },
	{ S("abc\r\n.\r\n"), 4, S("abc\r"), DATA_TOO_BIG, true, "" },
	{ S(".\r\n"), 0, S(""), DATA_FINE, true, "" },
	{ S("a\r\n.\r\n"), 0, S(""), DATA_TOO_BIG, true, "" },
	{ S("..\r\n.\r\n"), 3, S(".\r\n"), DATA_FINE, true, "" },
	{ S("..\r\n.\r\n"), 2, S(".\r"), DATA_TOO_BIG, true, "" },
	{ S("a\r\nb\r\nc\r\n.\r\nQUIT\r\n"), 4, S("a\r\nb"), DATA_TOO_BIG, true, "QUIT\r\n" },
	/* the first problem wins */
	{ S("abcdef\nx\r\n.\r\n"), 3, S("abc"), DATA_TOO_BIG, true, "" },
	{ S("a\nbcdef\r\n.\r\n"), 3, S("a"), DATA_BARE_NEWLINE, true, "" },
	{ S("ab\rc\r\n.\r\n"), 3, S("ab\r"), DATA_BARE_NEWLINE, true, "" },
	{ S("abc\nx\r\n.\r\n"), 3, S("abc"), DATA_BARE_NEWLINE, true, "" },
	{ X("a\n", 1500, "\r\n.\r\n"), NOLIMIT, S("a"), DATA_BARE_NEWLINE, true, "" },
	{ X("", 1500, "\nb\r\n.\r\n"), NOLIMIT, X("", 1000, ""), DATA_LINE_TOO_LONG, true, "" },
	{ X("", 1500, "\r\n.\r\n"), 10, X("", 10, ""), DATA_TOO_BIG, true, "" },
	{ X("", 1500, "\r\n.\r\n"), 1200, X("", 1000, ""), DATA_LINE_TOO_LONG, true, "" },
	/* one octet over both limits at once: the size is reported */
	{ X("", 1000, "\r\n.\r\n"), 1000, X("", 1000, ""), DATA_TOO_BIG, true, "" },
};

#define ROWS (sizeof(rows) / sizeof(rows[0]))
#define BUF_MAX 4096

struct sink {
	const struct data_reader *r;
	char buf[BUF_MAX];
	size_t len;
	unsigned calls;
};

static void sink_out(void *arg, const char *buf, size_t len)
{
	struct sink *s = arg;

	ck_assert_msg(s->r->problem == DATA_FINE, "out called after problem %d",
		      s->r->problem);
	ck_assert_uint_gt(len, 0);
	ck_assert_uint_le(len, sizeof(s->buf) - s->len);
	memcpy(s->buf + s->len, buf, len);
	s->len += len;
	s->calls++;
}

static size_t bytes_build(const struct bytes *b, char *out, size_t outsize)
{
	size_t len = b->headlen + b->fill + b->taillen;

	ck_assert_uint_le(len, outsize);
	memcpy(out, b->head, b->headlen);
	memset(out + b->headlen, 'x', b->fill);
	memcpy(out + b->headlen + b->fill, b->tail, b->taillen);
	return len;
}

struct outcome {
	struct data_reader r;
	struct sink sink;
	size_t consumed;
	bool done;
};

/* Feed in[0..len) in chunks of `chunk` bytes, except that a nonzero
 * `first` makes the first chunk that long; stop at done as a caller
 * would. A zero-length feed goes between chunks: it must change nothing. */
static void run(struct outcome *o, uint64_t max_size, const char *in, size_t len,
		size_t first, size_t chunk)
{
	size_t pos = 0;

	memset(o, 0, sizeof(*o));
	data_reader_init(&o->r, max_size);
	o->sink.r = &o->r;
	while (!o->done && pos < len) {
		size_t n = first > 0 && pos == 0 ? first : chunk;
		size_t got;

		if (n > len - pos)
			n = len - pos;
		got = data_reader_feed(&o->r, in + pos, n, sink_out, &o->sink, &o->done);
		ck_assert_uint_le(got, n);
		ck_assert_msg(o->done || got == n, "not done but %zu of %zu consumed", got, n);
		pos += got;
		if (!o->done)
			ck_assert_uint_eq(data_reader_feed(&o->r, in + pos, 0, sink_out,
							   &o->sink, &o->done), 0);
		ck_assert_msg(!o->done || got > 0, "done without consuming");
	}
	o->consumed = pos;
}

static void check(int row, const char *how, size_t at, const struct outcome *o,
		  const char *body, size_t bodylen, size_t want_consumed)
{
	ck_assert_msg(o->sink.len == bodylen && memcmp(o->sink.buf, body, bodylen) == 0,
		      "row %d %s %zu: body of %zu octets, want %zu", row, how, at,
		      o->sink.len, bodylen);
	ck_assert_msg(o->r.problem == rows[row].problem, "row %d %s %zu: problem %d, want %d",
		      row, how, at, o->r.problem, rows[row].problem);
	ck_assert_msg(o->done == rows[row].done, "row %d %s %zu: done %d", row, how, at,
		      o->done);
	ck_assert_msg(o->consumed == want_consumed, "row %d %s %zu: consumed %zu, want %zu",
		      row, how, at, o->consumed, want_consumed);
	if (o->r.problem == DATA_FINE)
		ck_assert_uint_eq(o->r.size, bodylen);
	else
		ck_assert_uint_ge(o->r.size, bodylen);
}

START_TEST(test_rows)
{
	static char in[BUF_MAX], body[BUF_MAX];
	size_t inlen = bytes_build(&rows[_i].in, in, sizeof(in));
	size_t bodylen = bytes_build(&rows[_i].body, body, sizeof(body));
	size_t restlen = strlen(rows[_i].rest);
	struct outcome o;

	ck_assert_uint_le(restlen, inlen);
	ck_assert(memcmp(in + inlen - restlen, rows[_i].rest, restlen) == 0);
	ck_assert(rows[_i].done || restlen == 0);

	run(&o, rows[_i].max_size, in, inlen, 0, inlen > 0 ? inlen : 1);
	check(_i, "whole", 0, &o, body, bodylen, inlen - restlen);
	for (size_t at = 1; at < inlen; at++) {
		run(&o, rows[_i].max_size, in, inlen, at, inlen);
		check(_i, "split at", at, &o, body, bodylen, inlen - restlen);
	}
	run(&o, rows[_i].max_size, in, inlen, 0, 1);
	check(_i, "byte by byte", 1, &o, body, bodylen, inlen - restlen);
}
END_TEST

/* Ordinary text goes out in one call per feed, not one per line. */
START_TEST(test_runs_merged)
{
	static const char in[] = "a\r\nb\r\n\r\nc\r\n.\r\n";
	static const char stuffed[] = "a\r\n..b\r\nc\r\n.\r\n";
	struct outcome o;

	run(&o, NOLIMIT, in, sizeof(in) - 1, 0, sizeof(in) - 1);
	ck_assert_uint_eq(o.sink.calls, 1);
	ck_assert_uint_eq(o.sink.len, sizeof(in) - 1 - 3);
	/* the removed dot breaks the run in two */
	run(&o, NOLIMIT, stuffed, sizeof(stuffed) - 1, 0, sizeof(stuffed) - 1);
	ck_assert_uint_eq(o.sink.calls, 2);
	ck_assert_uint_eq(o.sink.len, sizeof(stuffed) - 1 - 4);
}
END_TEST

/* After the end a feed consumes nothing and says done again. */
START_TEST(test_after_done)
{
	struct data_reader r;
	struct sink s = { .r = &r };
	bool done = false;

	data_reader_init(&r, NOLIMIT);
	ck_assert_uint_eq(data_reader_feed(&r, "a\r\n.\r\nQUIT\r\n", 12, sink_out, &s, &done), 6);
	ck_assert(done);
	done = false;
	ck_assert_uint_eq(data_reader_feed(&r, "QUIT\r\n", 6, sink_out, &s, &done), 0);
	ck_assert(done);
	done = false;
	ck_assert_uint_eq(data_reader_feed(&r, "", 0, sink_out, &s, &done), 0);
	ck_assert(done);
	ck_assert_uint_eq(s.len, 3);
	ck_assert_uint_eq(r.size, 3);
}
END_TEST

/* init starts afresh: a reader reused for the next message forgets the
 * last one's problem, size and framing. */
START_TEST(test_init_resets)
{
	struct data_reader r;
	struct sink s = { .r = &r };
	bool done;

	data_reader_init(&r, 2);
	ck_assert_uint_eq(data_reader_feed(&r, "abc\n", 4, sink_out, &s, &done), 4);
	ck_assert_int_eq(r.problem, DATA_TOO_BIG);
	data_reader_init(&r, NOLIMIT);
	ck_assert_int_eq(r.problem, DATA_FINE);
	ck_assert_uint_eq(r.size, 0);
	ck_assert_uint_eq(data_reader_feed(&r, ".\r\n", 3, sink_out, &s, &done), 3);
	ck_assert(done);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dataread");
	TCase *tc = tcase_create("framing");

	tcase_add_loop_test(tc, test_rows, 0, (int)ROWS);
	tcase_add_test(tc, test_runs_merged);
	tcase_add_test(tc, test_after_done);
	tcase_add_test(tc, test_init_resets);
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
