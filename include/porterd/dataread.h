/*
 * dataread — the DATA phase's input, sans-I/O (RFC 5321 4.1.1.4, 4.5.2).
 *
 * Fed raw bytes after the 354, it finds the end of the data — CRLF "."
 * CRLF and nothing else: a bare LF or bare CR never ends the data, so
 * "<LF>.<LF>" followed by commands is message text, not commands (SMTP
 * smuggling) — removes dot-stuffing, and hands the body on. It keeps
 * reading to the end whatever goes wrong, so the session stays in sync,
 * and records the first problem for the final reply.
 */
#ifndef PORTERD_DATAREAD_H
#define PORTERD_DATAREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF. */
#define DATA_LINE_MAX 1000

enum data_problem {
	DATA_FINE,
	DATA_TOO_BIG,		/* body over max_size: 552 5.3.4 */
	DATA_BARE_NEWLINE,	/* a bare CR or LF in the body: 554 5.6.0 */
	DATA_LINE_TOO_LONG,	/* a line over DATA_LINE_MAX: 554 5.6.0 */
};

struct data_reader {
	uint64_t max_size;	/* body octets allowed (after unstuffing) */
	uint64_t size;		/* body octets seen so far */
	enum data_problem problem;	/* the first one, or DATA_FINE */
	/* private: the framing state */
	unsigned state;
	size_t line_len;
};

void data_reader_init(struct data_reader *r, uint64_t max_size);

/* Where the body goes: called with unstuffed bytes, lines ending in CRLF,
 * the terminating "." line excluded. Not called any more once a problem
 * has been recorded. */
typedef void data_out_fn(void *arg, const char *buf, size_t len);

/*
 * Consume input. Returns the bytes consumed: everything up to and
 * including the terminating CRLF "." CRLF (then *done_r is true), or all
 * of buf when the end has not come yet (*done_r false). Bytes after the
 * terminator are not consumed: they are the next commands.
 */
size_t data_reader_feed(struct data_reader *r, const char *buf, size_t len,
			data_out_fn *out, void *arg, bool *done_r);

#endif
