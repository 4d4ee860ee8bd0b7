/*
 * fuzz_session — the real SMTP session (sans-I/O), driven as conn.c drives
 * it, against a real table directory and real Maildir delivery.
 *
 * Input: byte 0 picks the config (byte 0 % 48: vrfy on/252/off × expn
 * on/off × max_recipients 3/100 × the client 192.0.2.1 trusted or not ×
 * error_hard_limit 20/1000; error_soft_limit is 3, vrfy_rate 4/1m) and how
 * the session ends (byte 0 / 48 % 3: the input runs out, or
 * session_timeout() or session_shutdown() after it); byte 1 seeds the
 * chunk sizes the client's bytes arrive in (0: all at once); the rest is
 * what the client sends. The host keeps what the session has not consumed
 * and offers it again with the next chunk, feeding while the session
 * consumes and is neither blocked nor closing, exactly like
 * conn_feed_input(); a tarpit delay (session_delay_ms) is waited out on a
 * virtual clock, which is also the rate limiter's (a new table each play),
 * then session_delay_done() and feeding goes on, like conn_timer_cb().
 *
 * Checked besides memory errors and undefined behaviour:
 *  - every reply line is framed: three digits (2xx-5xx), ' ' or '-',
 *    CRLF at the end and no CR, LF or NUL before it, at most 512 octets;
 *    a multi-line reply keeps one code and is finished before the next
 *    command's reply, and before the session ends;
 *  - a client that never says SMTPUTF8 gets 7-bit replies only (RFC 6531:
 *    UTF-8 in a reply only for SMTPUTF8 requests; session.c already keeps
 *    8-bit full names from such clients). FUZZ_ALLOW_8BIT_REPLIES=1 turns
 *    this check off;
 *  - session_feed() consumes no more than it is offered, nothing at all
 *    once closing, nothing (and answers nothing) while the client has more
 *    than FUZZ_BACKLOG_MAX reply octets unread (io.backlogged; the client
 *    then reads them all and feeding goes on, like conn_write_cb()), and (all backends here answer at once) is never left
 *    blocked but by a tarpit delay (at most 30 s, none once closing), and
 *    never calls resume;
 *  - the replies do not depend on how the input was split: the same input
 *    is played again in one piece and must give the same transcript
 *    (queue ids aside) and consume the same bytes.
 *
 * Mail is delivered (synchronously) into Maildirs under a temporary
 * directory, on /dev/shm when it exists; max_message_size is 4k and the
 * Maildirs are emptied every FUZZ_CLEAN_EVERY deliveries, so long runs
 * stay small.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/config.h"
#include "porterd/delivery.h"
#include "porterd/directory.h"
#include "porterd/log.h"
#include "porterd/ratelimit.h"
#include "porterd/reply.h"
#include "porterd/session.h"

#include "fuzz_util.h"

#define FUZZ_CONFIGS 48
#define FUZZ_CLEAN_EVERY 256
#define FUZZ_TRANSCRIPT_MAX (1u << 20)
#define FUZZ_FEED_WINDOW 16384	/* conn.c's CONN_FEED_WINDOW */
#define FUZZ_BACKLOG_MAX 1024	/* reply octets the client leaves unread */

/* The RFC 821 cast of tests/unit/fixture.h, and entries that reach the
 * corners: 8-bit names, a list nested deeper than DIR_EXPAND_DEPTH_MAX,
 * a full name longer than a reply line, lists of remote members only. */
static const char fuzz_table_text[] =
	"# the cast of RFC 821 section 3.3, and a few more\n"
	"postmaster          user     Postmaster\n"
	"jones               user     Fred Jones\n"
	"smith@example.test  user     Fred Smith\n"
	"qsmith              user     Quincy Smith\n"
	"anna                user     Anna Gourzenkyinplatz\n"
	"boris               user     Boris Gourzenkyinplatz\n"
	"nameless            user\n"
	"j\xc3\xb6rg                user     J\xc3\xb6rg M\xc3\xbcller\n"
	"sales@example.org   user     Sales Desk\n"
	"long                user     Lorem ipsum dolor sit amet consectetur adipiscing elit sed do\n"
	"                             eiusmod tempor incididunt ut labore et dolore magna aliqua Ut\n"
	"                             enim ad minim veniam quis nostrud exercitation ullamco laboris\n"
	"                             nisi ut aliquip ex ea commodo consequat Duis aute irure dolor\n"
	"                             in reprehenderit in voluptate velit esse cillum dolore eu fugiat\n"
	"                             nulla pariatur Excepteur sint occaecat cupidatat non proident\n"
	"                             sunt in culpa qui officia deserunt mollit anim id est laborum\n"
	"example-people      list     jones, smith, qsmith,\n"
	"                             postel@usc-isif.example,\n"
	"                             fonebone@usc-isiq.example\n"
	"all-staff           list     example-people, postmaster, jones, bob\n"
	"loop-a              list     loop-b, jones\n"
	"loop-b              list     loop-a, qsmith\n"
	"ghosts              list     nobody, alice\n"
	"remote-only         list     a@remote.example, b@remote.example\n"
	"mixed               list     jones@example.org, sales@example.org, long, alice, bob\n"
	"d1 list d2\nd2 list d3\nd3 list d4\nd4 list d5\nd5 list d6\nd6 list d7\n"
	"d7 list d8\nd8 list d9\nd9 list d10\nd10 list d11\nd11 list d12\n"
	"d12 list d13\nd13 list d14\nd14 list d15\nd15 list d16\nd16 list d17\n"
	"d17 list d18\nd18 list jones\n"
	"intl                list     j\xc3\xb6rg, jones\n"
	"fwd8                forward  m\xc3\xbcller@elsewhere.example\n"
	"bob                 forward  bob@elsewhere.example\n"
	"carol               forward  <carol@example.org>\n"
	"alice               moved    alice@newco.example\n";

static char *tmp_dir, *mail_root;
static struct config *configs[FUZZ_CONFIGS];
static struct delivery *delivery;
static unsigned long deliveries;
static uint64_t clock_ms;	/* the virtual monotonic clock */
static size_t unread;		/* reply octets the client has not read */

struct transcript {
	char *buf;
	size_t len;
	bool overflow;
	bool open_multiline;	/* the last line was "ddd-" */
	char code[3];
	unsigned long queued;	/* "250 2.0.0 Ok: queued as" replies */
	unsigned long lines;	/* reply lines, all of them */
};

static struct transcript *current;
static bool in_feed;
/* "SMTPUTF8" appears nowhere in the input: no reply may carry 8-bit. */
static bool client_ascii_only;
static bool check_ascii_replies;

/* Only files: this also runs when a check fails, with the session in
 * whatever state it was. */
static void cleanup(void)
{
	if (tmp_dir != NULL)
		fuzz_rmtree(tmp_dir, 1);
	free(tmp_dir);
	tmp_dir = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const vrfy[] = { "on", "252", "off" };
	static const char *const expn[] = { "on", "off" };
	static const char *const rcpts[] = { "3", "100" };
	static const char *const trusted[] = { "none", "192.0.2.0/24" };
	static const char *const hard[] = { "20", "1000" };
	char table[4096], conf[4096], text[8192], err[512];
	FILE *devnull;

	(void)argc;
	(void)argv;
	/* Log lines are formatted (log_escape runs on client text) but
	 * thrown away; FUZZ_LOG=1 shows them. */
	devnull = fopen(getenv("FUZZ_LOG") != NULL ? "/dev/stderr" : "/dev/null", "w");
	log_init(LOG_LEVEL_DEBUG, devnull != NULL ? devnull : stderr);

	check_ascii_replies = getenv("FUZZ_ALLOW_8BIT_REPLIES") == NULL;
	tmp_dir = fuzz_mkdtemp("session");
	snprintf(table, sizeof(table), "%s/fuzz.table", tmp_dir);
	fuzz_write_file(table, fuzz_table_text, sizeof(fuzz_table_text) - 1);
	mail_root = malloc(strlen(tmp_dir) + sizeof("/mail"));
	if (mail_root == NULL)
		abort();
	sprintf(mail_root, "%s/mail", tmp_dir);
	fuzz_set_cleanup(cleanup);

	for (size_t i = 0; i < FUZZ_CONFIGS; i++) {
		snprintf(text, sizeof(text),
			 "hostname mail.example.test\n"
			 "domains example.test example.org\n"
			 "directory table fuzz.table\n"
			 "maildir mail/%%d/%%u\n"
			 "max_message_size 4k\n"
			 "max_recipients %s\n"
			 "vrfy %s\nexpn %s\n"
			 "trusted %s\n"
			 "error_soft_limit 3\nerror_hard_limit %s\nerror_delay 1s\n"
			 "vrfy_rate 4/1m\nrate_table_size 16\n",
			 rcpts[i / 6 % 2], vrfy[i % 3], expn[i / 3 % 2],
			 trusted[i / 12 % 2], hard[i / 24 % 2]);
		snprintf(conf, sizeof(conf), "%s/porterd.conf", tmp_dir);
		if (config_parse(text, strlen(text), conf, &configs[i], err,
				 sizeof(err)) < 0)
			fuzz_fail("session: fixture config: %s", err);
		if (directory_open(configs[i], &configs[i]->dir, err, sizeof(err)) < 0)
			fuzz_fail("session: fixture directory: %s", err);
	}
	delivery = delivery_new(NULL, configs[0]->maildir, 0);
	if (delivery == NULL)
		fuzz_fail("session: delivery_new(%s) failed", configs[0]->maildir);
	return 0;
}

/* ---- the reply sink ---- */

static void sink_write(void *arg, const char *buf, size_t len)
{
	struct transcript *t = arg;
	static const char queued[] = "250 2.0.0 Ok: queued as ";

	if (t != current)
		fuzz_fail("session: reply to a sink not in use");
	if (len < 6 || len > REPLY_LINE_MAX)
		fuzz_fail("session: reply line of %zu octets: '%.*s'", len,
			  (int)(len < 600 ? len : 600), buf);
	if (buf[0] < '2' || buf[0] > '5' || buf[1] < '0' || buf[1] > '9' ||
	    buf[2] < '0' || buf[2] > '9')
		fuzz_fail("session: reply code '%.3s'", buf);
	if (buf[3] != ' ' && buf[3] != '-')
		fuzz_fail("session: reply separator 0x%02x", (unsigned char)buf[3]);
	if (buf[len - 2] != '\r' || buf[len - 1] != '\n')
		fuzz_fail("session: reply line does not end in CRLF");
	for (size_t i = 0; i + 2 < len; i++)
		if (buf[i] == '\r' || buf[i] == '\n' || buf[i] == '\0')
			fuzz_fail("session: octet 0x%02x at %zu inside a reply line: '%.*s'",
				  (unsigned char)buf[i], i, (int)len - 2, buf);
	if (client_ascii_only)
		for (size_t i = 0; i + 2 < len; i++)
			if ((unsigned char)buf[i] & 0x80)
				fuzz_fail("session: 8-bit reply to a client that never sent "
					  "SMTPUTF8: '%.*s'", (int)len - 2, buf);
	if (t->open_multiline && memcmp(t->code, buf, 3) != 0)
		fuzz_fail("session: multi-line reply %.3s continued as %.3s",
			  t->code, buf);
	t->open_multiline = buf[3] == '-';
	memcpy(t->code, buf, 3);
	t->lines++;
	unread += len;

	if (t->overflow)
		return;
	if (t->len + len > FUZZ_TRANSCRIPT_MAX) {
		t->overflow = true;
		return;
	}
	/* The queue id differs between plays: keep the text before it. */
	if (len > sizeof(queued) - 1 && memcmp(buf, queued, sizeof(queued) - 1) == 0) {
		t->queued++;
		len = sizeof(queued) - 1;
	}
	memcpy(t->buf + t->len, buf, len);
	t->len += len;
}

/* The client reads its replies only when the session stops for them. */
static bool is_backlogged(void *arg)
{
	(void)arg;
	return unread > FUZZ_BACKLOG_MAX;
}

static void on_resume(void *arg)
{
	(void)arg;
	if (in_feed)
		fuzz_fail("session: resume called from inside session_feed");
	fuzz_fail("session: resume called, but every answer here is synchronous");
}

static bool contains_nocase(const uint8_t *data, size_t size, const char *word)
{
	size_t n = strlen(word);

	for (size_t i = 0; i + n <= size; i++) {
		size_t j = 0;

		while (j < n && (data[i + j] | 0x20) == (uint8_t)word[j])
			j++;
		if (j == n)
			return true;
	}
	return false;
}

/* ---- one play ---- */

static uint32_t next_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static uint64_t virtual_now_ms(void)
{
	return clock_ms;
}

/* A tarpit: the host holds the replies delay_ms, then tells the session
 * (conn_timer_cb). Any other reason to be blocked is a bug here. */
static void host_wait(struct session *s)
{
	unsigned delay = session_delay_ms(s);

	if (session_closing(s) && delay != 0)
		fuzz_fail("session: a delay of %u ms while closing", delay);
	if (delay > 30000)
		fuzz_fail("session: a delay of %u ms", delay);
	if (delay > 0) {
		clock_ms += delay;
		session_delay_done(s);
		if (session_delay_ms(s) != 0)
			fuzz_fail("session: delay still %u ms after session_delay_done",
				  session_delay_ms(s));
	}
	if (session_blocked(s))
		fuzz_fail("session: blocked with synchronous backends and no delay");
}

/* Feed what is pending, as conn_feed_input() does; returns bytes used. */
static size_t host_feed(struct session *s, const char *buf, size_t len)
{
	size_t used = 0;

	while (!session_closing(s)) {
		size_t avail = len - used;
		size_t window = avail < FUZZ_FEED_WINDOW ? avail : FUZZ_FEED_WINDOW;
		size_t n;

		unsigned long lines;
		bool backlogged;

		host_wait(s);
		if (window == 0)
			break;
		backlogged = is_backlogged(NULL);
		lines = current->lines;
		in_feed = true;
		n = session_feed(s, buf + used, window);
		in_feed = false;
		if (n > window)
			fuzz_fail("session: consumed %zu of %zu", n, window);
		if (backlogged && (n != 0 || current->lines != lines))
			fuzz_fail("session: took input while the client was backlogged");
		used += n;
		if (n == 0 && session_blocked(s))
			fuzz_fail("session: consumed nothing, yet blocked");
		if (n == 0 && backlogged) {
			unread = 0;	/* the client reads; conn_write_cb feeds on */
			continue;
		}
		if (n == 0)
			break;	/* an incomplete line: wait for more */
	}
	host_wait(s);
	return used;
}

enum ending { END_EOF, END_TIMEOUT, END_SHUTDOWN };

static size_t play(struct config *cfg, const uint8_t *data, size_t size,
		   uint8_t seed, enum ending ending, struct transcript *t)
{
	struct session_io io = {
		.sink = { .write = sink_write, .arg = t },
		.resume = on_resume,
		.backlogged = is_backlogged,
		.arg = NULL,
	};
	struct session_env env = { .delivery = delivery, .now_ms = virtual_now_ms };
	uint32_t rng = 0x9e3779b9u ^ seed;
	size_t fed = 0, pos = 0;
	struct session *s;

	current = t;
	clock_ms = 1000000;
	unread = 0;
	env.ratelimit = ratelimit_new((unsigned)cfg->vrfy_rate.count,
				      (unsigned)cfg->vrfy_rate.period,
				      (size_t)cfg->rate_table_size,
				      (unsigned)cfg->rate_ipv6_prefix);
	if (env.ratelimit == NULL)
		fuzz_fail("session: ratelimit_new failed");
	s = session_new(cfg, &env, "192.0.2.1", &io);
	if (s == NULL)
		fuzz_fail("session: session_new failed");
	session_start(s);
	while (fed < size && !session_closing(s)) {
		size_t chunk = seed == 0 ? size : 1 + next_rand(&rng) % seed;

		if (chunk > size - fed)
			chunk = size - fed;
		fed += chunk;
		pos += host_feed(s, (const char *)data + pos, fed - pos);
	}
	/* The client went quiet, or the server is stopping: 421 and close,
	 * whatever state the session was left in. */
	if (ending != END_EOF && !session_closing(s)) {
		unsigned long before = t->lines;

		if (ending == END_TIMEOUT)
			session_timeout(s);
		else
			session_shutdown(s);
		if (!session_closing(s) || t->lines != before + 1 ||
		    memcmp(t->code, "421", 3) != 0)
			fuzz_fail("session: no 421 and close on %s",
				  ending == END_TIMEOUT ? "timeout" : "shutdown");
	}
	if (session_closing(s)) {
		unsigned long before = t->lines;

		in_feed = true;
		if (size > pos && session_feed(s, (const char *)data + pos, size - pos) != 0)
			fuzz_fail("session: consumed input while closing");
		if (session_feed(s, "NOOP\r\n", 6) != 0 || t->lines != before)
			fuzz_fail("session: answered while closing");
		session_timeout(s);
		session_shutdown(s);
		if (t->lines != before)
			fuzz_fail("session: a second 421 after closing");
		in_feed = false;
	}
	if (t->open_multiline)
		fuzz_fail("session: a multi-line reply was left unfinished");
	session_free(&s);
	if (s != NULL)
		fuzz_fail("session: session_free did not clear the pointer");
	ratelimit_free(&env.ratelimit);
	current = NULL;
	return pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf_a[FUZZ_TRANSCRIPT_MAX], buf_b[FUZZ_TRANSCRIPT_MAX];
	struct transcript a = { .buf = buf_a }, b = { .buf = buf_b };
	struct config *cfg;
	enum ending ending;
	uint8_t seed;
	size_t used_a, used_b;

	if (size < 2)
		return 0;
	cfg = configs[data[0] % FUZZ_CONFIGS];
	ending = (enum ending)(data[0] / FUZZ_CONFIGS % 3);
	seed = data[1];
	data += 2;
	size -= 2;
	client_ascii_only = check_ascii_replies &&
			    !contains_nocase(data, size, "smtputf8");

	used_a = play(cfg, data, size, seed, ending, &a);
	if (seed != 0) {
		used_b = play(cfg, data, size, 0, ending, &b);
		if (used_a != used_b)
			fuzz_fail("session: consumed %zu in chunks, %zu in one piece",
				  used_a, used_b);
		if (!a.overflow && !b.overflow &&
		    (a.len != b.len || memcmp(a.buf, b.buf, a.len) != 0)) {
			size_t at = fuzz_first_difference(a.buf, a.len, b.buf, b.len);
			size_t from = at > 80 ? at - 80 : 0;

			fuzz_fail("session: replies depend on the split; first difference "
				  "at %zu:\n in chunks:     '%.*s'\n in one piece: '%.*s'",
				  at, (int)(a.len - from < 240 ? a.len - from : 240), a.buf + from,
				  (int)(b.len - from < 240 ? b.len - from : 240), b.buf + from);
		}
	}
	deliveries += a.queued + b.queued;
	if (deliveries >= FUZZ_CLEAN_EVERY) {
		fuzz_rmtree(mail_root, 0);
		deliveries = 0;
	}
	return 0;
}
