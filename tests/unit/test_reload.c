/*
 * reload: a config loaded on a thread and handed back on the loop, its
 * errors as "path:line", one load at a time with a request during a load
 * remembered; and what a reload may not change (config.c).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "porterd/config.h"
#include "porterd/directory.h"
#include "porterd/log.h"
#include "porterd/reload.h"
#include "testutil.h"

struct outcome {
	int calls;
	struct config *cfg;
	char err[1024];
	struct event_base *base;
	struct reload *r;
	int stop_after;
};

static void on_done(struct config *cfg, const char *err, void *arg)
{
	struct outcome *o = arg;

	o->calls++;
	config_unref(&o->cfg);
	o->cfg = cfg;
	snprintf(o->err, sizeof(o->err), "%s", err != NULL ? err : "");
	if (o->calls >= o->stop_after)
		event_base_loopbreak(o->base);
}

/* Run the loop until stop_after outcomes, bounded by 10 s. */
static void run_loop(struct outcome *o)
{
	struct timeval limit = { 10, 0 };

	event_base_loopexit(o->base, &limit);
	event_base_dispatch(o->base);
}

static char dir_tmp[64];

static void setup(void)
{
	log_init(LOG_LEVEL_ERR, NULL);
	temp_dir_make(dir_tmp, "reload");
}

static void teardown(void)
{
	temp_dir_remove(dir_tmp);
}

/* Write text to dir_tmp/name; a heap path the caller frees. */
static char *file_in_tmp(const char *name, const char *text)
{
	char path[256];

	return strdup(temp_dir_write(dir_tmp, name, text, path, sizeof(path)));
}

#define CONF "listen 127.0.0.1:2525\ndomains example.test\n" \
	     "directory table t.table\nmaildir mail/%d/%u\n"

static void outcome_init(struct outcome *o, const char *conf_path, int stop_after)
{
	memset(o, 0, sizeof(*o));
	o->base = event_base_new();
	o->stop_after = stop_after;
	o->r = reload_new(o->base, conf_path, on_done, o);
	ck_assert_ptr_nonnull(o->r);
}

static void outcome_free(struct outcome *o)
{
	reload_free(&o->r);
	config_unref(&o->cfg);
	event_base_free(o->base);
}

START_TEST(test_reload_loads_on_the_loop)
{
	char *conf = file_in_tmp("p.conf", CONF);
	char *table = file_in_tmp("t.table", "jones user Fred Jones\nsmith user Fred Smith\n");
	struct outcome o;

	outcome_init(&o, conf, 1);
	ck_assert(reload_request(o.r));
	ck_assert(reload_busy(o.r));
	run_loop(&o);
	ck_assert_int_eq(o.calls, 1);
	ck_assert_ptr_nonnull(o.cfg);
	ck_assert_str_eq(o.err, "");
	ck_assert_uint_eq(directory_count(o.cfg->dir), 2);
	ck_assert(!reload_busy(o.r));
	outcome_free(&o);
	free(conf);
	free(table);
}
END_TEST

START_TEST(test_reload_error_names_file_and_line)
{
	char *conf = file_in_tmp("p.conf", CONF);
	char *table = file_in_tmp("t.table", "jones user Fred Jones\nsmith employee x\n");
	char want[512];
	struct outcome o;

	outcome_init(&o, conf, 1);
	ck_assert(reload_request(o.r));
	run_loop(&o);
	ck_assert_int_eq(o.calls, 1);
	ck_assert_ptr_null(o.cfg);
	snprintf(want, sizeof(want), "%s:2:", table);
	ck_assert_msg(strncmp(o.err, want, strlen(want)) == 0, "error: %s", o.err);
	outcome_free(&o);
	free(conf);
	free(table);
}
END_TEST

START_TEST(test_reload_missing_file)
{
	char path[512];
	struct outcome o;

	snprintf(path, sizeof(path), "%s/none.conf", dir_tmp);
	outcome_init(&o, path, 1);
	ck_assert(reload_request(o.r));
	run_loop(&o);
	ck_assert_ptr_null(o.cfg);
	ck_assert_msg(strstr(o.err, "none.conf: cannot read") != NULL, "error: %s", o.err);
	outcome_free(&o);
}
END_TEST

/* Requests during a load make exactly one more load, which sees the
 * file as it is after the last request. */
START_TEST(test_reload_requests_coalesce)
{
	char *conf = file_in_tmp("p.conf", CONF);
	char *table = file_in_tmp("t.table", "jones user Fred Jones\n");
	struct outcome o;
	struct timeval settle = { 0, 300000 };

	outcome_init(&o, conf, 2);
	ck_assert(reload_request(o.r));
	ck_assert(reload_request(o.r));
	ck_assert(reload_request(o.r));
	free(file_in_tmp("t.table", "jones user Fred Jones\nsmith user Fred Smith\n"));
	run_loop(&o);
	ck_assert_int_eq(o.calls, 2);
	ck_assert_ptr_nonnull(o.cfg);
	ck_assert_uint_eq(directory_count(o.cfg->dir), 2);
	/* and no third load */
	event_base_loopexit(o.base, &settle);
	event_base_dispatch(o.base);
	ck_assert_int_eq(o.calls, 2);
	outcome_free(&o);
	free(conf);
	free(table);
}
END_TEST

/* Freed while a load runs: it is waited for and its result dropped. */
START_TEST(test_reload_free_while_busy)
{
	char *conf = file_in_tmp("p.conf", CONF);
	char *table = file_in_tmp("t.table", "jones user Fred Jones\n");
	struct outcome o;

	outcome_init(&o, conf, 1);
	ck_assert(reload_request(o.r));
	reload_free(&o.r);
	ck_assert_int_eq(o.calls, 0);
	outcome_free(&o);
	free(conf);
	free(table);
}
END_TEST

static struct config *parse(const char *text)
{
	struct config *cfg;
	char err[512];

	ck_assert_msg(config_parse(text, strlen(text), "/etc/p.conf", &cfg, err,
				   sizeof(err)) == 0, "%s", err);
	return cfg;
}

START_TEST(test_restart_only_changes)
{
	struct config *a = parse("listen 127.0.0.1:25\ndirectory table t\nuser mail\n");
	struct config *same = parse("listen 127.0.0.1:25\ndirectory table u\nuser mail\n"
				    "banner other\n");
	struct config *b = parse("listen 127.0.0.1:26\ndirectory table t\nuser news\n"
				 "group mail\nchroot /srv\nmaildir /srv/m/%d/%u\npidfile /run/p.pid\n"
				 "log syslog\n");
	char buf[128];

	config_restart_only_changes(a, same, buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
	config_restart_only_changes(a, b, buf, sizeof(buf));
	ck_assert_str_eq(buf, "listen user group chroot pidfile log");
	config_unref(&a);
	config_unref(&same);
	config_unref(&b);
}
END_TEST

static Suite *reload_suite(void)
{
	Suite *s = suite_create("reload");
	TCase *tc = tcase_create("reload");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_reload_loads_on_the_loop);
	tcase_add_test(tc, test_reload_error_names_file_and_line);
	tcase_add_test(tc, test_reload_missing_file);
	tcase_add_test(tc, test_reload_requests_coalesce);
	tcase_add_test(tc, test_reload_free_while_busy);
	tcase_add_test(tc, test_restart_only_changes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return testutil_run(reload_suite());
}
