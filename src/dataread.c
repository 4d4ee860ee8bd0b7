/*
 * dataread — the DATA phase's framing: finds CRLF "." CRLF, removes
 * dot-stuffing, enforces the line and size limits, and passes the body on
 * in runs as long as the input allows. No I/O, no allocation: all state
 * is in struct data_reader, so any split of the input into chunks gives
 * the same result.
 *
 * It must never let a bare CR or bare LF end a line or the data (that is
 * SMTP smuggling), never consume past the terminator (those bytes are the
 * next commands), never call `out` once a problem is recorded (a rejected
 * body must not cost memory or disk), and never stop reading early.
 *
 * Decisions the header leaves open:
 *  - Line length counts the octets of the line after unstuffing, CRLF
 *    included: RFC 5321 4.5.3.1.6 says the 1000 octets do not count the
 *    dot added for transparency.
 *  - `size` counts every body octet after unstuffing, including those not
 *    passed on after a problem, so it can be logged. It saturates.
 *  - `out` gets exactly the body octets that came before the octet where
 *    the first problem showed: a bare CR shows at the octet after it, so
 *    the CR itself is passed on; a bare LF shows at itself. When one octet
 *    breaks both limits, DATA_TOO_BIG is recorded.
 *  - Once done, further feeds consume nothing and report done again.
 */
#include "porterd/dataread.h"

#include <stdlib.h>
#include <string.h>

enum framing {
	FRAME_LINE_START,	/* a '.' here is stuffing or the terminator */
	FRAME_DOT,		/* the line began with '.' (dropped) */
	FRAME_DOT_CR,		/* ".\r" at a line start: LF ends the data */
	FRAME_TEXT,		/* inside a line */
	FRAME_CR,		/* a CR inside a line: only LF makes it CRLF */
	FRAME_DONE,
};

/* One feed call: the output sink, and the span of input not yet handed
 * to it (contiguous runs are merged so `out` sees whole chunks). */
struct feed {
	struct data_reader *r;
	data_out_fn *out;
	void *arg;
	const char *pending;
	size_t pending_len;
};

void data_reader_init(struct data_reader *r, uint64_t max_size)
{
	memset(r, 0, sizeof(*r));
	r->max_size = max_size;
	r->problem = DATA_FINE;
	r->state = FRAME_LINE_START;
}

static void flush(struct feed *f)
{
	if (f->pending_len > 0)
		f->out(f->arg, f->pending, f->pending_len);
	f->pending_len = 0;
}

static void emit(struct feed *f, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (f->pending_len > 0 && f->pending + f->pending_len == p) {
		f->pending_len += n;
		return;
	}
	flush(f);
	f->pending = p;
	f->pending_len = n;
}

/* The first problem wins; what was accepted before it still goes out,
 * and nothing after. */
static void set_problem(struct feed *f, enum data_problem problem)
{
	if (f->r->problem != DATA_FINE)
		return;
	flush(f);
	f->r->problem = problem;
}

static void count(struct data_reader *r, size_t n)
{
	r->size = n > UINT64_MAX - r->size ? UINT64_MAX : r->size + n;
	r->line_len = n > DATA_LINE_MAX - r->line_len ? DATA_LINE_MAX + 1 :
							r->line_len + n;
}

/* n body octets, all within one line: pass on what fits the limits. */
static void body(struct feed *f, const char *p, size_t n)
{
	struct data_reader *r = f->r;

	if (r->problem == DATA_FINE) {
		uint64_t size_room = r->size < r->max_size ? r->max_size - r->size : 0;
		size_t line_room = r->line_len < DATA_LINE_MAX ?
					   DATA_LINE_MAX - r->line_len : 0;
		size_t ok = n < line_room ? n : line_room;

		if (ok > size_room)
			ok = (size_t)size_room;
		emit(f, p, ok);
		if (ok < n)
			set_problem(f, size_room <= line_room ? DATA_TOO_BIG :
								DATA_LINE_TOO_LONG);
	}
	count(r, n);
}

/* Line text holding no LF, in which every CR is bare (each is followed,
 * within this text, by something other than LF). */
static void text_run(struct feed *f, const char *p, size_t n)
{
	const char *cr = f->r->problem == DATA_FINE ? memchr(p, '\r', n) : NULL;
	size_t k;

	if (cr == NULL) {
		body(f, p, n);
		return;
	}
	k = (size_t)(cr - p) + 1;
	body(f, p, k);
	set_problem(f, DATA_BARE_NEWLINE);
	body(f, p + k, n - k);
}

static void end_line(struct data_reader *r)
{
	r->line_len = 0;
	r->state = FRAME_LINE_START;
}

/* Inside a line: everything up to the next LF (or the end of the chunk)
 * in one go. A CR just before that point is the only one that may be
 * half of a CRLF. */
static size_t step_text(struct feed *f, const char *p, size_t n)
{
	const char *lf = memchr(p, '\n', n);
	size_t run = lf != NULL ? (size_t)(lf - p) : n;
	bool last_cr = run > 0 && p[run - 1] == '\r';
	size_t text = last_cr ? run - 1 : run;

	text_run(f, p, text);
	if (lf == NULL) {
		if (last_cr) {
			body(f, p + text, 1);
			f->r->state = FRAME_CR;
		}
		return n;
	}
	if (last_cr) {
		body(f, p + text, 2);
		end_line(f->r);
	} else {
		set_problem(f, DATA_BARE_NEWLINE);
		body(f, lf, 1);
	}
	return run + 1;
}

/* The byte at p decides: returns the bytes consumed, 0 when the byte is
 * to be read again in the state just entered. */
static size_t step_byte(struct feed *f, const char *p)
{
	struct data_reader *r = f->r;
	char c = *p;

	switch (r->state) {
	case FRAME_LINE_START:
		r->state = c == '.' ? FRAME_DOT : FRAME_TEXT;
		return c == '.' ? 1 : 0;
	case FRAME_DOT:
		if (c == '\r') {
			r->state = FRAME_DOT_CR;
			return 1;
		}
		r->state = FRAME_TEXT;
		if (c != '\n')
			return 0;
		set_problem(f, DATA_BARE_NEWLINE);
		body(f, p, 1);
		return 1;
	case FRAME_DOT_CR:
		if (c == '\n') {
			r->state = FRAME_DONE;
			return 1;
		}
		/* ".\r" then not LF: an unstuffed line starting with a bare CR */
		body(f, "\r", 1);
		set_problem(f, DATA_BARE_NEWLINE);
		r->state = FRAME_TEXT;
		return 0;
	case FRAME_CR:
		if (c == '\n') {
			body(f, p, 1);
			end_line(r);
			return 1;
		}
		set_problem(f, DATA_BARE_NEWLINE);
		r->state = FRAME_TEXT;
		return 0;
	default:
		abort();	/* TEXT and DONE never get here; anything else is corrupt */
	}
}

size_t data_reader_feed(struct data_reader *r, const char *buf, size_t len,
			data_out_fn *out, void *arg, bool *done_r)
{
	struct feed f = { .r = r, .out = out, .arg = arg };
	size_t pos = 0;

	while (pos < len && r->state != FRAME_DONE) {
		if (r->state == FRAME_TEXT)
			pos += step_text(&f, buf + pos, len - pos);
		else
			pos += step_byte(&f, buf + pos);
	}
	flush(&f);
	*done_r = r->state == FRAME_DONE;
	return pos;
}
