/*
 * reload — read the config file and open its directory again, away from
 * the event loop, for SIGHUP.
 *
 * Loading a large directory takes a while (a second or more for a million
 * entries), and the loop must keep answering meanwhile: the load runs on a
 * thread of its own and its result is handed back on the loop, complete
 * and validated, or as the error that stopped it ("path:line: ..."). The
 * caller swaps it in; nothing of a failed load is ever seen.
 *
 * One load at a time: a SIGHUP while one is under way is remembered and
 * starts one more load when it ends, so the last signal always leads to a
 * load that began after it.
 */
#ifndef PORTERD_RELOAD_H
#define PORTERD_RELOAD_H

#include <stdbool.h>

struct config;
struct event_base;
struct reload;

/*
 * The outcome of one load, on the loop's thread: cfg (the caller's
 * reference) on success, else NULL and err. Not called after
 * reload_free().
 */
typedef void reload_done_fn(struct config *cfg, const char *err, void *arg);

/* path must stay valid and should be absolute (-d changes directory). */
struct reload *reload_new(struct event_base *base, const char *path,
			  reload_done_fn *done, void *arg);

/* Start a load, or remember to start another when the current one ends.
 * Returns false when no thread could be started (logged). */
bool reload_request(struct reload *r);

/* True while a load is under way. */
bool reload_busy(const struct reload *r);

/* Wait for a load under way to end, discard its result, free. */
void reload_free(struct reload **r);

#endif
