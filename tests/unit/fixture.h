/*
 * A config with a directory, built from text, for the session and
 * directory suites: the RFC 821 section 3.3 cast plus lists that nest,
 * loop and point nowhere; and what a directory answers, as rows state it.
 */
#ifndef PORTERD_FIXTURE_H
#define PORTERD_FIXTURE_H

/* nftw() and FTW_DEPTH are X/Open; this header comes before any other. */
#define _XOPEN_SOURCE 700

#include "testutil.h"

#include "porterd/command.h"
#include "porterd/config.h"
#include "porterd/directory.h"
#include "porterd/log.h"

#include <ftw.h>
#include <sys/stat.h>

static const char fixture_table[] =
	"# the cast of RFC 821 section 3.3, and a few more\n"
	"postmaster          user     Postmaster\n"
	"jones               user     Fred Jones\n"
	"smith@example.test  user     Fred Smith\n"
	"qsmith              user     Quincy Smith\n"
	"anna                user     Anna Gourzenkyinplatz\n"
	"boris               user     Boris Gourzenkyinplatz\n"
	"nameless            user\n"
	"example-people      list     jones, smith, qsmith,\n"
	"                             postel@usc-isif.example,\n"
	"                             fonebone@usc-isiq.example\n"
	"all-staff           list     example-people, postmaster, jones, bob\n"
	"loop-a              list     loop-b, jones\n"
	"loop-b              list     loop-a, qsmith\n"
	"ghosts              list     nobody, alice\n"
	"bob                 forward  bob@elsewhere.example\n"
	"alice               moved    alice@newco.example\n"
	"j\xc3\xb6rg                user     J\xc3\xb6rg M\xc3\xbcller\n"
	"intl                list     j\xc3\xb6rg, jones\n"
	"fwd8                forward  m\xc3\xbcller@elsewhere.example\n";

/* Where the fixture's Maildirs go: a new temporary directory each time. */
static char fixture_mail_root[64];

/* A config for domains example.test and example.org with the fixture
 * table and Maildirs under fixture_mail_root; modes replaces the default
 * "vrfy on\nexpn on\n". Logging is kept to errors so the suites' output
 * stays readable. */
static inline struct config *fixture_config(const char *modes, char **table_path_r)
{
	char text[2048], err[512];
	struct config *cfg = NULL;
	char *table = write_temp_file(fixture_table);

	snprintf(fixture_mail_root, sizeof(fixture_mail_root), "/tmp/porterd-mail-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(fixture_mail_root));
	snprintf(text, sizeof(text),
		 "hostname mail.example.test\n"
		 "domains example.test example.org\n"
		 "directory table %s\n"
		 "maildir %s/%%d/%%u\n%s",
		 table, fixture_mail_root, modes != NULL ? modes : "vrfy on\nexpn on\n");
	log_init(LOG_LEVEL_ERR, stderr);
	if (config_parse(text, strlen(text), "fixture.conf", &cfg, err, sizeof(err)) < 0)
		ck_abort_msg("fixture config: %s", err);
	if (directory_open(cfg, &cfg->dir, err, sizeof(err)) < 0)
		ck_abort_msg("fixture directory: %s", err);
	*table_path_r = table;
	return cfg;
}

static inline int fixture_remove_one(const char *path, const struct stat *st,
				     int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static inline void fixture_free(struct config **cfg, char **table_path)
{
	config_unref(cfg);
	unlink(*table_path);
	free(*table_path);
	*table_path = NULL;
	nftw(fixture_mail_root, fixture_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- what a directory answers ---- */

/* The last answer: a lookup's or an expansion's. */
struct got {
	int calls;
	enum dir_status status;
	char fullname[256], address[256], query[256];
	char members[8192];	/* "name <addr>|<addr>|..." */
	size_t nmembers;
};

static struct got got;

static inline void got_keep(char *dst, size_t size, const char *s)
{
	snprintf(dst, size, "%s", s != NULL ? s : "(null)");
}

static inline void got_lookup(const struct dir_answer *a, void *arg)
{
	(void)arg;
	got.calls++;
	got.status = a->status;
	got_keep(got.fullname, sizeof(got.fullname), a->fullname);
	got_keep(got.address, sizeof(got.address), a->address);
	got_keep(got.query, sizeof(got.query), a->query);
}

static inline void got_expansion(const struct dir_expansion *e, void *arg)
{
	size_t o = 0;

	(void)arg;
	got.calls++;
	got.status = e->status;
	got.nmembers = e->nmembers;
	got_keep(got.query, sizeof(got.query), e->query);
	got_keep(got.address, sizeof(got.address), e->address);
	got.members[0] = '\0';
	for (size_t i = 0; i < e->nmembers && o < sizeof(got.members); i++)
		o += (size_t)snprintf(got.members + o, sizeof(got.members) - o, "%s%s%s<%s>",
				      i ? "|" : "", e->members[i].fullname ? e->members[i].fullname : "",
				      e->members[i].fullname ? " " : "", e->members[i].address);
}

/* Start a lookup or expansion of text in dir, its answer into got; the
 * handle while it is outstanding. */
static inline struct dir_request *fixture_ask_start(struct directory *dir, const char *text,
						    bool expand)
{
	struct lookup_arg arg;

	memset(&got, 0, sizeof(got));
	ck_assert_int_eq(command_parse_lookup_arg(text, strlen(text), &arg), LOOKUP_ARG_OK);
	if (expand)
		return directory_expand(dir, &arg, got_expansion, NULL);
	return directory_lookup(dir, &arg, got_lookup, NULL);
}

/* The same, for a directory that answers at once. */
static inline void fixture_ask(struct directory *dir, const char *text, bool expand)
{
	ck_assert_ptr_null(fixture_ask_start(dir, text, expand));
	ck_assert_int_eq(got.calls, 1);
}

#endif
