/*
 * porterd — an ESMTP server that answers VRFY and EXPN from an address
 * directory. main() only wires the modules together: read the config,
 * open the directory, bind the listeners, run the event loop until
 * SIGINT or SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "porterd/config.h"
#include "porterd/directory.h"
#include "porterd/log.h"
#include "porterd/server.h"

#ifndef PORTERD_CONF_DEFAULT
#define PORTERD_CONF_DEFAULT "conf/porterd.conf"
#endif
#ifndef PORTERD_VERSION
#define PORTERD_VERSION "0.1.0"
#endif

struct options {
	const char *config_path;
	bool check_only;
	bool verbose;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: porterd [-htvV] [-c file]\n"
		"  -c file  configuration file (default %s)\n"
		"  -t       check the configuration and the directory, then exit\n"
		"  -v       log debug events too\n"
		"  -V       print the version and exit\n",
		PORTERD_CONF_DEFAULT);
}

/* Returns -1 to exit 0 (e.g. -V), 1 to exit with a usage error, 0 to run. */
static int parse_options(int argc, char **argv, struct options *o)
{
	int ch;

	o->config_path = PORTERD_CONF_DEFAULT;
	while ((ch = getopt(argc, argv, "c:htvV")) != -1) {
		switch (ch) {
		case 'c':
			o->config_path = optarg;
			break;
		case 't':
			o->check_only = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'V':
			printf("porterd %s\n", PORTERD_VERSION);
			return -1;
		case 'h':
			usage(stdout);
			return -1;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	return 0;
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;

	(void)what;
	log_event(LOG_LEVEL_INFO, "event=shutdown signal=%s",
		  sig == SIGTERM ? "TERM" : "INT");
	server_shutdown(srv);
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_flush();
}

/* Log lines of one loop pass leave in one write: the flush event,
 * activated by the pass's first line, runs after the pass's callbacks. */
static void schedule_log_flush(void *arg)
{
	event_active(arg, EV_TIMEOUT, 1);
}

static int serve(struct config *cfg)
{
	struct event_base *base = event_base_new();
	struct event *sigint = NULL, *sigterm = NULL, *logflush = NULL;
	struct server *srv = NULL;
	char err[512];
	int rc = 1;

	if (base == NULL) {
		fprintf(stderr, "porterd: cannot create the event loop\n");
		return 1;
	}
	if (server_new(base, cfg, &srv, err, sizeof(err)) < 0) {
		fprintf(stderr, "porterd: %s\n", err);
		goto out;
	}
	sigint = evsignal_new(base, SIGINT, on_stop_signal, srv);
	sigterm = evsignal_new(base, SIGTERM, on_stop_signal, srv);
	if (sigint == NULL || sigterm == NULL || evsignal_add(sigint, NULL) < 0 ||
	    evsignal_add(sigterm, NULL) < 0) {
		fprintf(stderr, "porterd: cannot install signal handlers\n");
		goto out;
	}
	logflush = event_new(base, -1, 0, on_log_flush, NULL);
	if (logflush == NULL) {
		fprintf(stderr, "porterd: cannot create the log flush event\n");
		goto out;
	}
	log_buffer_start(schedule_log_flush, logflush);
	log_event(LOG_LEVEL_INFO, "event=start version=%s hostname=%s",
		  PORTERD_VERSION, cfg->hostname);
	rc = event_base_dispatch(base) < 0 ? 1 : 0;
	log_buffer_stop();
	log_event(LOG_LEVEL_INFO, "event=stop");
out:
	if (logflush != NULL) {
		log_buffer_stop();
		event_free(logflush);
	}
	if (sigint != NULL)
		event_free(sigint);
	if (sigterm != NULL)
		event_free(sigterm);
	server_free(&srv);
	event_base_free(base);
	return rc;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct config *cfg = NULL;
	char err[1024];
	int rc;

	rc = parse_options(argc, argv, &o);
	if (rc != 0)
		return rc < 0 ? 0 : 1;
	log_init(o.check_only ? LOG_LEVEL_WARN
		 : o.verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, stderr);
	/* A client that vanishes mid-write must not kill the daemon. */
	signal(SIGPIPE, SIG_IGN);

	if (config_load(o.config_path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "porterd: %s\n", err);
		return 1;
	}
	if (o.check_only) {
		printf("porterd: %s: configuration ok, %zu directory entries\n",
		       o.config_path, directory_count(cfg->dir));
		config_unref(&cfg);
		return 0;
	}
	rc = serve(cfg);
	config_unref(&cfg);
	return rc;
}
