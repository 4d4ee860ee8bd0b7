/*
 * reload — config_load() on a thread, its result handed back on the loop.
 *
 * The thread owns nothing the loop touches: it builds a new config from
 * the file alone and ends by writing one byte to a pipe; the loop's read
 * event joins it and takes the result. A struct config is reference
 * counted without atomics, which is safe because it changes hands only
 * here, after the thread has ended.
 */
#include "porterd/reload.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "porterd/config.h"
#include "porterd/log.h"

struct reload {
	struct event_base *base;
	const char *path;
	reload_done_fn *done;
	void *arg;

	int wake[2];		/* thread -> loop: the load has ended */
	struct event *wake_ev;
	pthread_t thread;
	bool busy;		/* a thread runs, or has ended unjoined */
	bool again;		/* a request came while busy */

	/* Written by the thread, read by the loop after the join. */
	struct config *cfg;
	char err[1024];
};

static void *load_thread(void *arg)
{
	struct reload *r = arg;
	char byte = 1;
	ssize_t n;

	if (config_load(r->path, &r->cfg, r->err, sizeof(r->err)) < 0)
		r->cfg = NULL;
	do
		n = write(r->wake[1], &byte, 1);
	while (n < 0 && errno == EINTR);
	return NULL;
}

static bool load_start(struct reload *r)
{
	int rc;

	r->cfg = NULL;
	r->err[0] = '\0';
	rc = pthread_create(&r->thread, NULL, load_thread, r);
	if (rc != 0) {
		log_event(LOG_LEVEL_ERR, "event=reload_failed error=\"cannot start a thread: %s\"",
			  strerror(rc));
		return false;
	}
	r->busy = true;
	return true;
}

/* Join the thread that ended; its result is then ours to read. */
static void load_join(struct reload *r)
{
	char byte;

	while (read(r->wake[0], &byte, 1) < 0 && errno == EINTR)
		;
	pthread_join(r->thread, NULL);
	r->busy = false;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct reload *r = arg;
	struct config *cfg;

	(void)fd;
	(void)what;
	load_join(r);
	cfg = r->cfg;
	r->cfg = NULL;
	r->done(cfg, cfg == NULL ? r->err : NULL, r->arg);
	if (r->again) {
		r->again = false;
		load_start(r);
	}
}

struct reload *reload_new(struct event_base *base, const char *path,
			  reload_done_fn *done, void *arg)
{
	struct reload *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->base = base;
	r->path = path;
	r->done = done;
	r->arg = arg;
	r->wake[0] = r->wake[1] = -1;
	if (pipe(r->wake) < 0 || fcntl(r->wake[0], F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(r->wake[1], F_SETFD, FD_CLOEXEC) < 0) {
		reload_free(&r);
		return NULL;
	}
	r->wake_ev = event_new(base, r->wake[0], EV_READ | EV_PERSIST, on_wake, r);
	if (r->wake_ev == NULL || event_add(r->wake_ev, NULL) < 0) {
		reload_free(&r);
		return NULL;
	}
	return r;
}

bool reload_request(struct reload *r)
{
	if (r->busy) {
		r->again = true;
		return true;
	}
	return load_start(r);
}

bool reload_busy(const struct reload *r)
{
	return r->busy;
}

void reload_free(struct reload **rp)
{
	struct reload *r = *rp;

	if (r == NULL)
		return;
	if (r->busy) {
		load_join(r);
		config_unref(&r->cfg);
	}
	if (r->wake_ev != NULL)
		event_free(r->wake_ev);
	for (int i = 0; i < 2; i++)
		if (r->wake[i] >= 0)
			close(r->wake[i]);
	free(r);
	*rp = NULL;
}
