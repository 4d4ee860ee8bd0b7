/*
 * fuzz_dataread — the DATA phase's framing (dataread.h) against a
 * reference model written from RFC 5321 4.5.2 and the decisions listed at
 * the top of src/dataread.c.
 *
 * Input: two bytes of max_size (big-endian; 0xffff means no limit), one
 * byte seeding the chunk sizes (0: the whole input in one feed), then the
 * bytes that follow the 354. The reader is fed chunk by chunk as a host
 * would (only what it has not consumed is offered again), and must agree
 * exactly with the model on: where the data ends (first CRLF "." CRLF, the
 * start of the data counting as a line start; a bare CR or LF never ends
 * a line), the bytes consumed, the body handed to `out` (unstuffed, and
 * only what came before the first problem), the problem recorded and the
 * size counted. After the end, feeding consumes nothing and says done.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/dataread.h"

#include "fuzz_util.h"

struct sink {
	char *buf;
	size_t len, cap;
	unsigned calls_after_problem;
	const struct data_reader *r;
};

static void sink_out(void *arg, const char *buf, size_t len)
{
	struct sink *s = arg;

	if (len == 0)
		fuzz_fail("dataread: out called with 0 octets");
	if (s->r->problem != DATA_FINE)
		s->calls_after_problem++;
	if (s->len + len > s->cap)
		fuzz_fail("dataread: out got more octets than were fed");
	memcpy(s->buf + s->len, buf, len);
	s->len += len;
}

/* What the reader must do with data[0..len), computed the plain way. */
struct model {
	bool done;
	size_t consumed;
	char *out;		/* body octets before the first problem */
	size_t outlen;
	uint64_t size;		/* every unstuffed body octet */
	enum data_problem problem;
};

static void model_run(const uint8_t *d, size_t len, uint64_t max_size,
		      struct model *m)
{
	size_t end = len, line_len = 0;
	bool line_start = true, pending_bare_cr = false;

	memset(m, 0, sizeof(*m));
	m->out = malloc(len + 1);
	if (m->out == NULL)
		abort();
	m->problem = DATA_FINE;

	/* The terminator: ".\r\n" at the start or just after a CRLF. */
	for (size_t p = 0; p + 3 <= len; p++) {
		if (d[p] == '.' && d[p + 1] == '\r' && d[p + 2] == '\n' &&
		    (p == 0 || (p >= 2 && d[p - 2] == '\r' && d[p - 1] == '\n'))) {
			end = p;
			m->done = true;
			m->consumed = p + 3;
			break;
		}
	}
	if (!m->done) {
		m->consumed = len;
		/* A line-start ".\r" at the very end may yet be the
		 * terminator: its CR is not body until the next octet says so. */
		if (len >= 2 && d[len - 1] == '\r' && d[len - 2] == '.' &&
		    (len == 2 || (len >= 4 && d[len - 4] == '\r' && d[len - 3] == '\n')))
			end = len - 1;
	}

	for (size_t i = 0; i < end; i++) {
		uint8_t c = d[i];
		bool bare_cr, bare_lf, line_end;

		if (line_start && c == '.') {	/* dot-stuffing */
			line_start = false;
			continue;
		}
		line_start = false;
		/* Classified on the raw stream: unstuffing never removes a
		 * byte between a CR and an LF. A CR at the very end of what
		 * was fed is not (yet) bare. */
		bare_cr = c == '\r' && i + 1 < len && d[i + 1] != '\n';
		bare_lf = c == '\n' && (i == 0 || d[i - 1] != '\r');
		line_end = c == '\n' && !bare_lf;
		/* A bare CR shows at the octet after it; a bare LF at itself. */
		if (m->problem == DATA_FINE && (pending_bare_cr || bare_lf))
			m->problem = DATA_BARE_NEWLINE;
		if (m->problem == DATA_FINE) {
			if (m->size + 1 > max_size)
				m->problem = DATA_TOO_BIG;
			else if (line_len + 1 > DATA_LINE_MAX)
				m->problem = DATA_LINE_TOO_LONG;
			else
				m->out[m->outlen++] = (char)c;
		}
		if (m->size != UINT64_MAX)
			m->size++;
		line_len++;
		if (line_end) {
			line_len = 0;
			line_start = true;
		}
		pending_bare_cr = bare_cr;
	}
	/* The CRLF before the terminator is a line end, so no bare CR is
	 * left pending when the data is complete. */
}

/* xorshift32: chunk sizes from the seed byte, the same on every replay. */
static uint32_t next_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct data_reader r;
	struct sink sink;
	struct model m;
	uint64_t max_size;
	uint32_t rng;
	uint8_t seed;
	size_t pos = 0, fed = 0;
	bool done = false;

	if (size < 3)
		return 0;
	max_size = (uint64_t)data[0] << 8 | data[1];
	if (max_size == 0xffff)
		max_size = UINT64_MAX;
	seed = data[2];
	data += 3;
	size -= 3;
	rng = 0x9e3779b9u ^ seed;

	model_run(data, size, max_size, &m);

	memset(&sink, 0, sizeof(sink));
	sink.cap = size;
	sink.buf = malloc(size + 1);
	sink.r = &r;
	if (sink.buf == NULL)
		abort();
	data_reader_init(&r, max_size);

	/*
	 * The host: `fed` octets have arrived, `pos` were consumed. Each
	 * round brings a chunk and offers everything unconsumed, exactly
	 * what conn.c does with its input buffer.
	 */
	while (fed < size) {
		size_t chunk = seed == 0 ? size : 1 + next_rand(&rng) % seed;
		size_t offered, used;
		bool d;

		if (chunk > size - fed)
			chunk = size - fed;
		fed += chunk;
		offered = fed - pos;
		used = data_reader_feed(&r, (const char *)data + pos, offered,
					sink_out, &sink, &d);
		if (used > offered)
			fuzz_fail("dataread: consumed %zu of %zu offered", used, offered);
		if (done && used != 0)
			fuzz_fail("dataread: consumed %zu after the end", used);
		if (done && !d)
			fuzz_fail("dataread: done went back to false");
		if (!d && used != offered)
			fuzz_fail("dataread: not done but left %zu of %zu",
				  offered - used, offered);
		pos += used;
		done = d;
	}
	if (size == 0) {
		/* An empty feed consumes nothing and is not the end. */
		bool d = true;
		if (data_reader_feed(&r, "", 0, sink_out, &sink, &d) != 0 || d)
			fuzz_fail("dataread: empty feed");
	}

	if (done != m.done)
		fuzz_fail("dataread: done=%d, model says %d", done, m.done);
	if (pos != m.consumed)
		fuzz_fail("dataread: consumed %zu, model says %zu", pos, m.consumed);
	if (r.problem != m.problem)
		fuzz_fail("dataread: problem %d, model says %d", (int)r.problem,
			  (int)m.problem);
	if (r.size != m.size)
		fuzz_fail("dataread: size %llu, model says %llu",
			  (unsigned long long)r.size, (unsigned long long)m.size);
	if (sink.calls_after_problem != 0)
		fuzz_fail("dataread: out called %u times after a problem",
			  sink.calls_after_problem);
	if (sink.len != m.outlen || memcmp(sink.buf, m.out, m.outlen) != 0)
		fuzz_fail("dataread: body of %zu octets, model says %zu (first "
			  "difference at %zu)", sink.len, m.outlen,
			  fuzz_first_difference(sink.buf, sink.len, m.out, m.outlen));
	if (done) {
		bool d = false;
		size_t used = data_reader_feed(&r, "QUIT\r\n", 6, sink_out, &sink, &d);

		if (used != 0 || !d)
			fuzz_fail("dataread: after the end: consumed %zu, done %d", used, d);
	}
	free(sink.buf);
	free(m.out);
	return 0;
}
