/*
 * porterd — an ESMTP server that answers VRFY and EXPN from an address
 * directory. main() only wires the modules together: read the config,
 * open the directory, go to the background (-d), take the pidfile, bind
 * the listeners, drop root, run the event loop until SIGINT or SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <limits.h>

#include <event2/event.h>

#include "porterd/config.h"
#include "porterd/daemon.h"
#include "porterd/directory.h"
#include "porterd/log.h"
#include "porterd/reload.h"
#include "porterd/server.h"

#ifndef PORTERD_CONF_DEFAULT
#define PORTERD_CONF_DEFAULT "conf/porterd.conf"
#endif
#ifndef PORTERD_VERSION
#define PORTERD_VERSION "0.1.0"
#endif

struct options {
	const char *config_path;
	char reload_path[PATH_MAX];	/* config_path made absolute: -d chdirs */
	bool check_only;
	bool verbose;
	bool foreground;	/* -f: the default, said explicitly */
	bool daemonize;		/* -d */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: porterd [-dfhtvV] [-c file]\n"
		"  -c file  configuration file (default %s)\n"
		"  -d       detach and run in the background (classic init)\n"
		"  -f       run in the foreground (the default; for systemd)\n"
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
	while ((ch = getopt(argc, argv, "c:dfhtvV")) != -1) {
		switch (ch) {
		case 'c':
			o->config_path = optarg;
			break;
		case 'd':
			o->daemonize = true;
			break;
		case 'f':
			o->foreground = true;
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
	if (o->daemonize && o->foreground) {
		fprintf(stderr, "porterd: -d and -f exclude each other\n");
		usage(stderr);
		return 1;
	}
	return 0;
}

/* What runs the event loop; torn down by loop_free(). */
struct loop {
	struct event_base *base;
	struct server *srv;
	struct reload *reload;
	struct event *sigint, *sigterm, *sighup, *logflush;
	bool stopping;
};

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct loop *l = arg;

	(void)what;
	log_event(LOG_LEVEL_INFO, "event=shutdown signal=%s",
		  sig == SIGTERM ? "TERM" : "INT");
	if (!l->stopping)
		daemon_notify("STOPPING=1\nSTATUS=stopping");
	l->stopping = true;
	server_shutdown(l->srv);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct loop *l = arg;

	(void)sig;
	(void)what;
	if (l->stopping)
		return;
	log_event(LOG_LEVEL_INFO, "event=reload_start signal=HUP");
	daemon_notify_reloading();
	if (!reload_request(l->reload))
		daemon_notify("READY=1\nSTATUS=serving; reload failed");
}

static void log_reload_failed(const char *err)
{
	char esc[1024];

	log_event(LOG_LEVEL_ERR, "event=reload_failed error=\"%s\" kept=old",
		  log_escape(esc, sizeof(esc), err, strlen(err)));
}

/* A load has ended: swap its config in, or keep the old one. */
static void on_reload_done(struct config *cfg, const char *err, void *arg)
{
	struct loop *l = arg;
	char why[1024];

	if (cfg == NULL) {
		log_reload_failed(err);
	} else if (l->stopping) {
		log_event(LOG_LEVEL_INFO, "event=reload_dropped reason=stopping");
	} else if (server_reload(l->srv, cfg, why, sizeof(why)) < 0) {
		log_reload_failed(why);
		cfg = NULL;
	} else {
		log_event(LOG_LEVEL_INFO, "event=reload path=%s entries=%zu", cfg->path,
			  directory_count(cfg->dir));
	}
	config_unref(&cfg);
	if (!l->stopping && !reload_busy(l->reload))
		daemon_notify(err == NULL ? "READY=1\nSTATUS=serving"
			      : "READY=1\nSTATUS=serving; the last reload failed, see the log");
}

/* SIGHUP reads the file again after -d has changed to "/". */
static bool absolute_path(const char *path, char *buf, size_t size)
{
	char cwd[PATH_MAX];
	int n;

	if (path[0] == '/')
		n = snprintf(buf, size, "%s", path);
	else if (getcwd(cwd, sizeof(cwd)) != NULL)
		n = snprintf(buf, size, "%s/%s", cwd, path);
	else
		return false;
	return n > 0 && (size_t)n < size;
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

static void loop_free(struct loop *l)
{
	if (l->logflush != NULL) {
		log_buffer_stop();
		event_free(l->logflush);
	}
	if (l->sigint != NULL)
		event_free(l->sigint);
	if (l->sigterm != NULL)
		event_free(l->sigterm);
	if (l->sighup != NULL)
		event_free(l->sighup);
	reload_free(&l->reload);
	server_free(&l->srv);
	if (l->base != NULL)
		event_base_free(l->base);
}

/* Bind the listeners and start the workers: everything that may need
 * root, or must exist before the privileges go. */
static int loop_setup(struct loop *l, struct config *cfg, const char *reload_path,
		      char *err, size_t errsize)
{
	int passed = daemon_listen_fds(err, errsize);

	if (passed < 0)
		return -1;
	l->base = event_base_new();
	if (l->base == NULL) {
		snprintf(err, errsize, "cannot create the event loop");
		return -1;
	}
	if (server_new(l->base, cfg, passed, &l->srv, err, errsize) < 0)
		return -1;
	l->reload = reload_new(l->base, reload_path, on_reload_done, l);
	l->sigint = evsignal_new(l->base, SIGINT, on_stop_signal, l);
	l->sigterm = evsignal_new(l->base, SIGTERM, on_stop_signal, l);
	l->sighup = evsignal_new(l->base, SIGHUP, on_hup, l);
	if (l->reload == NULL || l->sigint == NULL || l->sigterm == NULL ||
	    l->sighup == NULL || evsignal_add(l->sigint, NULL) < 0 ||
	    evsignal_add(l->sigterm, NULL) < 0 || evsignal_add(l->sighup, NULL) < 0) {
		snprintf(err, errsize, "cannot install signal handlers");
		return -1;
	}
	l->logflush = event_new(l->base, -1, 0, on_log_flush, NULL);
	if (l->logflush == NULL) {
		snprintf(err, errsize, "cannot create the log flush event");
		return -1;
	}
	return 0;
}

/* Set up, drop root, tell whoever waits (-d), serve until stopped.
 * Takes the caller's reference to cfg. */
static int serve(struct config *cfg, const char *reload_path,
		 const struct daemon_privileges *priv,
		 struct daemon_ready *ready)
{
	struct loop l = { 0 };
	char err[512];
	int rc = 1;

	if (loop_setup(&l, cfg, reload_path, err, sizeof(err)) < 0 ||
	    daemon_privileges_drop(priv, err, sizeof(err)) < 0) {
		fprintf(stderr, "porterd: %s\n", err);
		goto out;
	}
	daemon_ready(ready);
	log_buffer_start(schedule_log_flush, l.logflush);
	log_event(LOG_LEVEL_INFO, "event=start version=%s hostname=%s",
		  PORTERD_VERSION, cfg->hostname);
	daemon_notify("READY=1\nSTATUS=serving");
	/* The server holds its own reference: after a reload the first
	 * config (its directory, its connections) goes with its sessions. */
	config_unref(&cfg);
	rc = event_base_dispatch(l.base) < 0 ? 1 : 0;
	log_buffer_stop();
	log_event(LOG_LEVEL_INFO, "event=stop");
out:
	loop_free(&l);
	config_unref(&cfg);
	return rc;
}

/* The pidfile is taken before the listeners are bound, so a second
 * porterd stops at it, and released after everything else. Takes the
 * caller's reference to cfg. */
static int run(struct config *cfg, const struct options *o)
{
	struct daemon_ready ready = DAEMON_READY_FOREGROUND;
	struct daemon_privileges priv;
	struct daemon_pidfile *pf = NULL;
	char err[1024];
	int rc;

	if ((o->daemonize && daemon_background(&ready, err, sizeof(err)) < 0) ||
	    (cfg->pidfile != NULL &&
	     daemon_pidfile_open(cfg->pidfile, &pf, err, sizeof(err)) < 0) ||
	    daemon_privileges_prepare(cfg, &priv, err, sizeof(err)) < 0) {
		fprintf(stderr, "porterd: %s\n", err);
		daemon_pidfile_close(&pf);
		config_unref(&cfg);
		return 1;
	}
	rc = serve(cfg, o->reload_path, &priv, &ready);
	daemon_pidfile_close(&pf);
	return rc;
}

/* -t as root also resolves user and group, which only matter when
 * started as root: a typo fails the check, not the start. */
static int check_privileges(const struct config *cfg)
{
	struct daemon_privileges priv;
	char err[512];

	if (daemon_privileges_prepare(cfg, &priv, err, sizeof(err)) < 0) {
		fprintf(stderr, "porterd: %s: %s\n", cfg->path, err);
		return -1;
	}
	return 0;
}

/* `log` in the file wins; without it -d logs to syslog. Syslog is opened
 * here, before any chroot, while /dev/log can still be reached. */
static void log_choose(const struct config *cfg, const struct options *o)
{
	enum config_log target = cfg->log;

	if (target == CONFIG_LOG_AUTO)
		target = o->daemonize ? CONFIG_LOG_SYSLOG : CONFIG_LOG_STDERR;
	if (target == CONFIG_LOG_SYSLOG)
		log_use_syslog(NULL);
	else
		log_init(log_get_level(), stderr);
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
	/* -d logs to syslog unless the file says otherwise: from the start,
	 * so the lines of loading do not land on the terminal. */
	if (o.daemonize && !o.check_only)
		log_use_syslog(NULL);

	if (!absolute_path(o.config_path, o.reload_path, sizeof(o.reload_path))) {
		fprintf(stderr, "porterd: %s: cannot make the path absolute\n", o.config_path);
		return 1;
	}
	if (config_load(o.config_path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "porterd: %s\n", err);
		return 1;
	}
	if (o.check_only && geteuid() == 0 && check_privileges(cfg) < 0) {
		config_unref(&cfg);
		return 1;
	}
	if (o.check_only) {
		printf("porterd: %s: configuration ok, %zu directory entries\n",
		       o.config_path, directory_count(cfg->dir));
		config_unref(&cfg);
		return 0;
	}
	log_choose(cfg, &o);
	rc = run(cfg, &o);	/* it takes cfg */
	return rc;
}
