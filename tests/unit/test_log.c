/* Log lines: client text is escaped so it can neither split nor forge a
 * line, and each event is one key=value line. */
#include "testutil.h"

#include <pthread.h>
#include <string.h>
#include <syslog.h>

#include "porterd/log.h"

static const struct {
	const char *in;
	size_t len;
	const char *out;
} escape_rows[] = {
	{ "jones", 5, "jones" },
	{ "Quincy Smith", 12, "Quincy Smith" },
	{ "a\"b\\c", 5, "a\\x22b\\x5cc" },
	{ "x\r\nevent=forged", 15, "x\\x0d\\x0aevent=forged" },
	{ "\x00\x1f\x7f", 3, "\\x00\\x1f\\x7f" },
	{ "j\xc3\xb6rg", 5, "j\\xc3\\xb6rg" },
	{ "", 0, "" },
};

START_TEST(test_escape_rows)
{
	char buf[LOG_VALUE_MAX];

	ck_assert_str_eq(log_escape(buf, sizeof(buf), escape_rows[_i].in, escape_rows[_i].len),
			 escape_rows[_i].out);
}
END_TEST

START_TEST(test_escape_cut)
{
	char in[1000], buf[LOG_VALUE_MAX];
	size_t n;

	memset(in, 'a', sizeof(in));
	log_escape(buf, sizeof(buf), in, sizeof(in));
	n = strlen(buf);
	ck_assert_uint_lt(n, sizeof(buf));
	ck_assert_str_eq(buf + n - 3, "...");
	/* an escape is never cut in half */
	memset(in, '\n', sizeof(in));
	log_escape(buf, sizeof(buf), in, sizeof(in));
	n = strlen(buf);
	ck_assert_str_eq(buf + n - 7, "\\x0a...");
	/* too small a buffer gives an empty string, not an overrun */
	ck_assert_str_eq(log_escape(buf, 4, "abc", 3), "");
}
END_TEST

START_TEST(test_event_line_and_level)
{
	char line[256] = "";
	FILE *f = tmpfile();

	ck_assert_ptr_nonnull(f);
	log_init(LOG_LEVEL_INFO, f);
	log_event(LOG_LEVEL_INFO, "event=vrfy code=%d", 250);
	log_event(LOG_LEVEL_DEBUG, "event=hidden");
	rewind(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	ck_assert_str_eq(line, "porterd: level=info event=vrfy code=250\n");
	ck_assert_ptr_null(fgets(line, sizeof(line), f));
	ck_assert_int_eq(log_get_level(), LOG_LEVEL_INFO);
	log_init(LOG_LEVEL_INFO, NULL);
	fclose(f);
}
END_TEST

/* Everything written to f so far, as one string. */
static const char *contents(FILE *f, char *buf, size_t size)
{
	size_t n;

	fflush(f);
	rewind(f);
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fseek(f, 0, SEEK_END);
	return buf;
}

static int notified;

static void count_notify(void *arg)
{
	ck_assert_ptr_eq(arg, &notified);
	notified++;
}

static void *log_from_other_thread(void *arg)
{
	(void)arg;
	log_event(LOG_LEVEL_INFO, "event=worker");
	return NULL;
}

START_TEST(test_batched_lines_wait_for_flush)
{
	char buf[4096];
	FILE *f = tmpfile();

	ck_assert_ptr_nonnull(f);
	log_init(LOG_LEVEL_INFO, f);
	notified = 0;
	log_buffer_start(count_notify, &notified);
	log_event(LOG_LEVEL_INFO, "event=one");
	log_event(LOG_LEVEL_INFO, "event=two");
	ck_assert_str_eq(contents(f, buf, sizeof(buf)), "");
	ck_assert_int_eq(notified, 1);	/* once: when the batch began */
	log_flush();
	ck_assert_str_eq(contents(f, buf, sizeof(buf)),
			 "porterd: level=info event=one\nporterd: level=info event=two\n");
	log_event(LOG_LEVEL_INFO, "event=three");
	ck_assert_int_eq(notified, 2);
	log_buffer_stop();
	log_event(LOG_LEVEL_INFO, "event=four");	/* written through again */
	ck_assert_str_eq(contents(f, buf, sizeof(buf)),
			 "porterd: level=info event=one\nporterd: level=info event=two\n"
			 "porterd: level=info event=three\nporterd: level=info event=four\n");
	ck_assert_int_eq(notified, 2);
	log_init(LOG_LEVEL_INFO, NULL);
	fclose(f);
}
END_TEST

START_TEST(test_other_threads_write_through_in_order)
{
	char buf[4096];
	FILE *f = tmpfile();
	pthread_t t;

	ck_assert_ptr_nonnull(f);
	log_init(LOG_LEVEL_INFO, f);
	log_buffer_start(NULL, NULL);
	log_event(LOG_LEVEL_INFO, "event=loop");
	ck_assert_int_eq(pthread_create(&t, NULL, log_from_other_thread, NULL), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	/* The worker's line is out at once, after what was batched before it. */
	ck_assert_str_eq(contents(f, buf, sizeof(buf)),
			 "porterd: level=info event=loop\nporterd: level=info event=worker\n");
	log_buffer_stop();
	log_init(LOG_LEVEL_INFO, NULL);
	fclose(f);
}
END_TEST

START_TEST(test_full_batch_is_written_whole)
{
	static char buf[256 * 1024];
	FILE *f = tmpfile();
	size_t lines = 0;

	ck_assert_ptr_nonnull(f);
	log_init(LOG_LEVEL_INFO, f);
	log_buffer_start(NULL, NULL);
	for (int i = 0; i < 1200; i++)
		log_event(LOG_LEVEL_INFO, "event=fill n=%04d pad=%0100d", i, 0);
	/* More than a batch holds: the full batches are out, no line split. */
	contents(f, buf, sizeof(buf));
	ck_assert_uint_gt(strlen(buf), 0);
	ck_assert_int_eq(buf[strlen(buf) - 1], '\n');
	log_buffer_stop();
	contents(f, buf, sizeof(buf));
	for (const char *p = buf; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	ck_assert_uint_eq(lines, 1200);
	ck_assert_ptr_nonnull(strstr(buf, "event=fill n=1199 "));
	log_init(LOG_LEVEL_INFO, NULL);
	fclose(f);
}
END_TEST

/* The fast formatter and vsnprintf agree on every conversion. */
START_TEST(test_conversions)
{
	char buf[4096];
	FILE *f = tmpfile();

	ck_assert_ptr_nonnull(f);
	log_init(LOG_LEVEL_INFO, f);
	log_event(LOG_LEVEL_INFO, "a=%d b=%d c=%d d=%u e=%zu f=%s g=100%% h=%s",
		  0, -42, -2147483647 - 1, 4294967295u, (size_t)18446744073709551615ull,
		  "x y", "");
	log_event(LOG_LEVEL_INFO, "hex=%x pad=%5d zd=%zd", 255u, 7, (ssize_t)-3);
	ck_assert_str_eq(contents(f, buf, sizeof(buf)),
			 "porterd: level=info a=0 b=-42 c=-2147483648 d=4294967295 "
			 "e=18446744073709551615 f=x y g=100% h=\n"
			 "porterd: level=info hex=ff pad=    7 zd=-3\n");
	log_init(LOG_LEVEL_INFO, NULL);
	fclose(f);
}
END_TEST

START_TEST(test_overlong_line_is_cut_not_split)
{
	char buf[4096], big[3000];
	FILE *f = tmpfile();

	ck_assert_ptr_nonnull(f);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_init(LOG_LEVEL_INFO, f);
	log_event(LOG_LEVEL_INFO, "event=big v=%s", big);
	log_event(LOG_LEVEL_INFO, "event=big v=%5s", big);	/* the vsnprintf way */
	contents(f, buf, sizeof(buf));
	ck_assert_uint_lt(strlen(buf), 2400);
	ck_assert_ptr_eq(strchr(strchr(buf, '\n') + 1, '\n'), buf + strlen(buf) - 1);
	ck_assert_uint_eq((size_t)(strchr(buf, '\n') - buf) + 1, strlen(buf) / 2);
	log_init(LOG_LEVEL_INFO, NULL);
	fclose(f);
}
END_TEST

/* The piece-by-piece line: the same text log_event() gives, client text
 * escaped, nothing built below the level, an overlong line cut whole. */
START_TEST(test_line_builder)
{
	char buf[4096], big[3000];
	struct log_line l;
	FILE *f = tmpfile();

	ck_assert_ptr_nonnull(f);
	log_init(LOG_LEVEL_INFO, f);
	ck_assert(log_line_start(&l, LOG_LEVEL_INFO));
	log_line_lit(&l, "event=vrfy client=");
	log_line_str(&l, "127.0.0.1");
	log_line_lit(&l, " query=\"");
	log_line_escaped(&l, "jo\"nes\r\nlevel=err", 17);
	log_line_lit(&l, "\" code=");
	log_line_uint(&l, 250);
	log_line_lit(&l, " n=");
	log_line_uint(&l, 0);
	log_line_end(&l);
	ck_assert(!log_line_start(&l, LOG_LEVEL_DEBUG));
	ck_assert_str_eq(contents(f, buf, sizeof(buf)),
			 "porterd: level=info event=vrfy client=127.0.0.1 "
			 "query=\"jo\\x22nes\\x0d\\x0alevel=err\" code=250 n=0\n");
	/* Plain text as long as log_escape() keeps whole, then longer: cut. */
	memset(big, 'y', sizeof(big));
	for (size_t n = LOG_VALUE_MAX - 6; n <= LOG_VALUE_MAX - 2; n++) {
		char esc[LOG_VALUE_MAX], want[LOG_LINE_MAX];

		ck_assert(log_line_start(&l, LOG_LEVEL_WARN));
		log_line_escaped(&l, big, n);
		log_line_end(&l);
		snprintf(want, sizeof(want), "porterd: level=warning %s\n",
			 log_escape(esc, sizeof(esc), big, n));
		ck_assert_str_eq(strrchr(contents(f, buf, sizeof(buf)) , '\n') -
				 strlen(want) + 1, want);
	}
	rewind(f);
	ck_assert_int_eq(ftruncate(fileno(f), 0), 0);
	ck_assert(log_line_start(&l, LOG_LEVEL_INFO));
	for (int i = 0; i < 3; i++)
		log_line_add(&l, big, sizeof(big));
	log_line_end(&l);
	contents(f, buf, sizeof(buf));
	ck_assert_uint_eq(strlen(buf), LOG_LINE_MAX);
	ck_assert_ptr_eq(strchr(buf, '\n'), buf + LOG_LINE_MAX - 1);
	log_init(LOG_LEVEL_INFO, NULL);
	fclose(f);
}
END_TEST

/* ---- syslog ---------------------------------------------------------- */

static const struct {
	enum log_level level;
	int priority;
} priority_rows[] = {
	{ LOG_LEVEL_ERR, LOG_ERR },
	{ LOG_LEVEL_WARN, LOG_WARNING },
	{ LOG_LEVEL_INFO, LOG_INFO },
	{ LOG_LEVEL_DEBUG, LOG_DEBUG },
};

START_TEST(test_syslog_priority)
{
	ck_assert_int_eq(log_syslog_priority(priority_rows[_i].level),
			 priority_rows[_i].priority);
}
END_TEST

/* What the syslog sink sent, message by message. */
static struct {
	pthread_mutex_t lock;
	size_t n;
	int priority[8];
	char text[8][2048];
} sent = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void capture_syslog(int priority, const char *text)
{
	pthread_mutex_lock(&sent.lock);
	ck_assert_uint_lt(sent.n, 8);
	sent.priority[sent.n] = priority;
	snprintf(sent.text[sent.n], sizeof(sent.text[0]), "%s", text);
	sent.n++;
	pthread_mutex_unlock(&sent.lock);
}

static void syslog_start(enum log_level level)
{
	sent.n = 0;
	log_init(level, NULL);
	log_use_syslog(capture_syslog);
}

/* One message a line: the level's priority, no "porterd: " (syslog tags
 * it), no newline, client text still escaped; levels above the maximum
 * are left out as on a stream. */
START_TEST(test_syslog_one_message_a_line)
{
	char esc[LOG_VALUE_MAX];

	syslog_start(LOG_LEVEL_INFO);
	log_event(LOG_LEVEL_WARN, "event=one n=%d", 1);
	log_event(LOG_LEVEL_DEBUG, "event=hidden");
	log_event(LOG_LEVEL_INFO, "event=two arg=\"%s\"",
		  log_escape(esc, sizeof(esc), "x\nlevel=err event=forged", 24));
	log_event(LOG_LEVEL_ERR, "event=three v=%5s", "ab");
	ck_assert_uint_eq(sent.n, 3);
	ck_assert_int_eq(sent.priority[0], LOG_WARNING);
	ck_assert_str_eq(sent.text[0], "level=warning event=one n=1");
	ck_assert_int_eq(sent.priority[1], LOG_INFO);
	ck_assert_str_eq(sent.text[1], "level=info event=two arg=\"x\\x0alevel=err event=forged\"");
	ck_assert_int_eq(sent.priority[2], LOG_ERR);
	ck_assert_str_eq(sent.text[2], "level=err event=three v=   ab");
	{
		struct log_line l;

		ck_assert(log_line_start(&l, LOG_LEVEL_WARN));
		log_line_lit(&l, "event=four q=\"");
		log_line_escaped(&l, "a\nb", 3);
		log_line_lit(&l, "\"");
		log_line_end(&l);
		ck_assert_uint_eq(sent.n, 4);
		ck_assert_int_eq(sent.priority[3], LOG_WARNING);
		ck_assert_str_eq(sent.text[3], "level=warning event=four q=\"a\\x0ab\"");
	}
	log_init(LOG_LEVEL_INFO, NULL);
}
END_TEST

/* Batching is for streams: with syslog each line leaves at once, whole
 * and in order, whichever thread logs it, and nothing waits for a flush. */
START_TEST(test_syslog_not_batched)
{
	pthread_t t;

	syslog_start(LOG_LEVEL_INFO);
	notified = 0;
	log_buffer_start(count_notify, &notified);
	log_event(LOG_LEVEL_INFO, "event=loop");
	ck_assert_uint_eq(sent.n, 1);
	ck_assert_int_eq(pthread_create(&t, NULL, log_from_other_thread, NULL), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	log_event(LOG_LEVEL_INFO, "event=loop2");
	ck_assert_uint_eq(sent.n, 3);
	ck_assert_str_eq(sent.text[0], "level=info event=loop");
	ck_assert_str_eq(sent.text[1], "level=info event=worker");
	ck_assert_str_eq(sent.text[2], "level=info event=loop2");
	log_flush();
	log_buffer_stop();
	ck_assert_int_eq(notified, 0);
	ck_assert_uint_eq(sent.n, 3);
	log_init(LOG_LEVEL_INFO, NULL);
}
END_TEST

/* An overlong line is cut as on a stream, never split in two messages. */
START_TEST(test_syslog_overlong_line_is_cut)
{
	char big[3000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	syslog_start(LOG_LEVEL_INFO);
	log_event(LOG_LEVEL_INFO, "event=big v=%s", big);
	ck_assert_uint_eq(sent.n, 1);
	ck_assert_uint_lt(strlen(sent.text[0]), 1100);
	ck_assert_ptr_null(strchr(sent.text[0], '\n'));
	ck_assert_int_eq(strncmp(sent.text[0], "level=info event=big v=xxx", 26), 0);
	log_init(LOG_LEVEL_INFO, NULL);
}
END_TEST

/* log_init() goes back to the stream. */
START_TEST(test_syslog_then_stream)
{
	char buf[256];
	FILE *f = tmpfile();

	ck_assert_ptr_nonnull(f);
	syslog_start(LOG_LEVEL_INFO);
	log_event(LOG_LEVEL_INFO, "event=to_syslog");
	log_init(LOG_LEVEL_INFO, f);
	log_event(LOG_LEVEL_INFO, "event=to_stream");
	ck_assert_uint_eq(sent.n, 1);
	ck_assert_str_eq(contents(f, buf, sizeof(buf)), "porterd: level=info event=to_stream\n");
	log_init(LOG_LEVEL_INFO, NULL);
	fclose(f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("escape");

	tcase_add_loop_test(tc, test_escape_rows, 0, sizeof(escape_rows) / sizeof(escape_rows[0]));
	tcase_add_test(tc, test_escape_cut);
	tcase_add_test(tc, test_event_line_and_level);
	tcase_add_test(tc, test_batched_lines_wait_for_flush);
	tcase_add_test(tc, test_other_threads_write_through_in_order);
	tcase_add_test(tc, test_full_batch_is_written_whole);
	tcase_add_test(tc, test_conversions);
	tcase_add_test(tc, test_overlong_line_is_cut_not_split);
	tcase_add_test(tc, test_line_builder);
	suite_add_tcase(s, tc);

	tc = tcase_create("syslog");
	tcase_add_loop_test(tc, test_syslog_priority, 0,
			    sizeof(priority_rows) / sizeof(priority_rows[0]));
	tcase_add_test(tc, test_syslog_one_message_a_line);
	tcase_add_test(tc, test_syslog_not_batched);
	tcase_add_test(tc, test_syslog_overlong_line_is_cut);
	tcase_add_test(tc, test_syslog_then_stream);
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
