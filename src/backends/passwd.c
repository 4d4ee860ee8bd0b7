/*
 * passwd — the `passwd` directory backend: the system's accounts, each a
 * user with the full name its GECOS field gives.
 *
 * The accounts are enumerated once at open (getpwent(3), or fgetpwent(3)
 * on a passwd(5) file) into a table backend built in memory (table.h), so
 * a lookup never scans, never calls the name service and never blocks,
 * and answers exactly as a table: the account name first, then words of
 * full names. It must never serve an account whose name is not a local
 * part porterd can be asked for: those are left out, and counted in one
 * log line. Enumeration uses the C library's static state: opens run one
 * at a time (at start, and one reload at a time).
 */
#include "porterd/backend.h"

#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "porterd/command.h"
#include "porterd/log.h"
#include "porterd/strutil.h"
#include "porterd/table.h"
#include "porterd/textscan.h"

#define PASSWD_PATH_MAX 4096		/* resolved file=, with its NUL */
#define PASSWD_FULLNAME_MAX 1024	/* longer full names are not used */
#define PASSWD_UID_LIMIT 4294967294UL	/* (uid_t)-1 is no account's */
/* Debian's adduser gives ordinary accounts uids in this range. */
#define PASSWD_MIN_UID_DEFAULT 1000UL
#define PASSWD_MAX_UID_DEFAULT 60000UL
#define PASSWD_SYSTEM "the system accounts"

/* Shells that say "no logins": hide_nologin=yes leaves their users out. */
static const char *const nologin_shells[] = {
	"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false",
};

struct passwd_params {
	unsigned long min_uid, max_uid;
	bool hide_nologin;
	char file[PASSWD_PATH_MAX];	/* resolved; "" for the system's */
};

enum param { PARAM_MIN_UID, PARAM_MAX_UID, PARAM_HIDE_NOLOGIN, PARAM_FILE,
	     PARAM__COUNT };

/* One name=value word of the directive, for the parameter's setter. */
struct param_value {
	const char *name;
	const char *text;
	size_t len;
	const char *base_dir;
};

typedef int param_set_fn(struct passwd_params *p, const struct param_value *v,
			 char *err, size_t errsize);

/* The accounts kept so far: strings in one growing buffer, by offset. */
struct account_ref {
	size_t key;
	size_t name;		/* NO_NAME when none */
};

#define NO_NAME ((size_t)-1)

struct accounts {
	char *text;
	size_t len, cap;
	struct account_ref *refs;
	size_t n, refs_cap;
	size_t bad_names;	/* not a local part: left out */
};

/* "prefix: the text of errno value e"; the text is thread-safe to get,
 * since a reload opens backends on a thread of its own. */
static void passwd_errno(char *err, size_t errsize, const char *prefix, int e)
{
	char text[128];

	str_error(err, errsize, "%s: %s", prefix,
		  str_errno(e, text, sizeof(text)));
}

/* ---- parameters ---- */

static int param_uid(unsigned long *slot, const struct param_value *v,
		     char *err, size_t errsize)
{
	unsigned long n = 0;

	for (size_t i = 0; i < v->len; i++) {
		if (v->text[i] < '0' || v->text[i] > '9')
			break;
		n = n * 10 + (unsigned long)(v->text[i] - '0');
		if (n > PASSWD_UID_LIMIT)
			return str_error(err, errsize,
					 "passwd: %s: " QUOTED " is over %lu",
					 v->name, SHOWN(v->text, v->len),
					 PASSWD_UID_LIMIT);
		if (i + 1 == v->len) {
			*slot = n;
			return 0;
		}
	}
	return str_error(err, errsize, "passwd: %s: not a number: " QUOTED,
			 v->name, SHOWN(v->text, v->len));
}

static int set_min_uid(struct passwd_params *p, const struct param_value *v,
		       char *err, size_t errsize)
{
	return param_uid(&p->min_uid, v, err, errsize);
}

static int set_max_uid(struct passwd_params *p, const struct param_value *v,
		       char *err, size_t errsize)
{
	return param_uid(&p->max_uid, v, err, errsize);
}

static int set_hide_nologin(struct passwd_params *p,
			    const struct param_value *v, char *err,
			    size_t errsize)
{
	if ((v->len == 3 && memcmp(v->text, "yes", 3) == 0) ||
	    (v->len == 2 && memcmp(v->text, "no", 2) == 0)) {
		p->hide_nologin = v->len == 3;
		return 0;
	}
	return str_error(err, errsize,
			 "passwd: %s: expected yes or no, got " QUOTED, v->name,
			 SHOWN(v->text, v->len));
}

/* The path, resolved against base_dir when relative. */
static int set_file(struct passwd_params *p, const struct param_value *v,
		    char *err, size_t errsize)
{
	if (v->len == 0)
		return str_error(err, errsize, "passwd: %s: empty path",
				 v->name);
	if (!text_path_resolve(p->file, sizeof(p->file), v->base_dir, v->text,
			       v->len))
		return str_error(err, errsize, "passwd: %s: path too long",
				 v->name);
	return 0;
}

static const struct {
	const char *name;
	param_set_fn *set;
} params[PARAM__COUNT] = {
	[PARAM_MIN_UID] = { "min_uid", set_min_uid },
	[PARAM_MAX_UID] = { "max_uid", set_max_uid },
	[PARAM_HIDE_NOLOGIN] = { "hide_nologin", set_hide_nologin },
	[PARAM_FILE] = { "file", set_file },
};

static int param_find(const char *name, size_t len)
{
	for (int i = 0; i < PARAM__COUNT; i++)
		if (strlen(params[i].name) == len &&
		    memcmp(params[i].name, name, len) == 0)
			return i;
	return -1;
}

/* "min_uid, max_uid, ..." for the error naming an unknown parameter. */
static const char *param_names(char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; i < PARAM__COUNT && used < size; i++) {
		int n = snprintf(buf + used, size - used, "%s%s",
				 i > 0 ? ", " : "", params[i].name);

		if (n < 0)
			break;
		used += (size_t)n;
	}
	return buf;
}

/* One word "name=value" of [s, e). */
static int param_word(struct passwd_params *p, bool seen[PARAM__COUNT],
		      const char *s, const char *e, const char *base_dir,
		      char *err, size_t errsize)
{
	const char *eq = memchr(s, '=', (size_t)(e - s));
	struct param_value v = { .base_dir = base_dir };
	int i;

	if (eq == NULL || eq == s)
		return str_error(err, errsize,
				 "passwd: expected name=value, got " QUOTED,
				 SHOWN(s, (size_t)(e - s)));
	i = param_find(s, (size_t)(eq - s));
	if (i < 0) {
		char known[128];

		return str_error(err, errsize,
				 "passwd: unknown parameter " QUOTED
				 " (known: %s)", SHOWN(s, (size_t)(eq - s)),
				 param_names(known, sizeof(known)));
	}
	if (seen[i])
		return str_error(err, errsize, "passwd: %s given twice",
				 params[i].name);
	seen[i] = true;
	v.name = params[i].name;
	v.text = eq + 1;
	v.len = (size_t)(e - v.text);
	return params[i].set(p, &v, err, errsize);
}

static int params_parse(const char *args, const char *base_dir,
			struct passwd_params *p, char *err, size_t errsize)
{
	bool seen[PARAM__COUNT] = { false };
	const char *s = args != NULL ? args : "", *e;

	*p = (struct passwd_params){ .min_uid = PASSWD_MIN_UID_DEFAULT,
				     .max_uid = PASSWD_MAX_UID_DEFAULT };
	for (; (s = text_next_word(s, &e)) != NULL; s = e)
		if (param_word(p, seen, s, e, base_dir, err, errsize) < 0)
			return -1;
	if (p->min_uid > p->max_uid)
		return str_error(err, errsize,
				 "passwd: min_uid %lu is above max_uid %lu",
				 p->min_uid, p->max_uid);
	return 0;
}

/* ---- accounts ---- */

/* RFC 5321 atext: what a dot-string local part is made of, besides dots. */
static bool is_atext(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/*
 * A name porterd can be asked for: a dot-string of ASCII atext of at most
 * ADDRESS_LOCAL_MAX octets. A leading '+' or '-' marks a passwd(5) compat
 * (NIS) entry, not an account.
 */
static bool name_is_local_part(const char *s)
{
	size_t len = strnlen(s, ADDRESS_LOCAL_MAX + 1);

	if (len == 0 || len > ADDRESS_LOCAL_MAX || s[0] == '+' || s[0] == '-' ||
	    s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(is_atext(s[i]) || (s[i] == '.' && s[i + 1] != '.')))
			return false;
	return true;
}

static bool shell_is_nologin(const char *shell)
{
	size_t n = sizeof(nologin_shells) / sizeof(*nologin_shells);

	for (size_t i = 0; shell != NULL && i < n; i++)
		if (strcmp(shell, nologin_shells[i]) == 0)
			return true;
	return false;
}

static bool account_wanted(const struct passwd_params *p,
			   const struct passwd *pw)
{
	return (unsigned long)pw->pw_uid >= p->min_uid &&
	       (unsigned long)pw->pw_uid <= p->max_uid &&
	       !(p->hide_nologin && shell_is_nologin(pw->pw_shell));
}

/*
 * The full name as finger(1) shows it, into out: the GECOS field up to its
 * first comma, each '&' the login name with its first letter capitalised.
 * False when there is none, or it would be longer than the bound.
 */
static bool fullname_expand(const char *gecos, const char *login, char *out,
			    size_t outsize)
{
	size_t len = 0, loginlen = strlen(login);

	for (; gecos != NULL && *gecos != '\0' && *gecos != ','; gecos++) {
		size_t n = *gecos == '&' ? loginlen : 1;

		if (n >= outsize - len)
			return false;
		if (*gecos == '&') {
			memcpy(out + len, login, loginlen);
			if (out[len] >= 'a' && out[len] <= 'z')
				out[len] = (char)(out[len] - 'a' + 'A');
		} else {
			out[len] = *gecos;
		}
		len += n;
	}
	out[len] = '\0';
	return len > 0;
}

/* Append s (with its NUL) to the accounts' text; its offset, or NO_NAME
 * when memory runs out. */
static size_t accounts_add_text(struct accounts *a, const char *s)
{
	size_t len = strlen(s) + 1, off = a->len;

	if (len > a->cap - a->len) {
		size_t cap = a->cap ? a->cap : 4096;
		char *t;

		while (len > cap - a->len) {
			if (cap > SIZE_MAX / 2)
				return NO_NAME;
			cap *= 2;
		}
		t = realloc(a->text, cap);
		if (t == NULL)
			return NO_NAME;
		a->text = t;
		a->cap = cap;
	}
	memcpy(a->text + off, s, len);
	a->len += len;
	return off;
}

/* Keep one account the parameters let through; -1 when memory runs out. */
static int accounts_take(struct accounts *a, const struct passwd_params *p,
			 const struct passwd *pw)
{
	char name[PASSWD_FULLNAME_MAX + 1];
	struct account_ref ref;
	bool named;

	if (pw->pw_name == NULL || !account_wanted(p, pw))
		return 0;
	if (!name_is_local_part(pw->pw_name)) {
		a->bad_names++;
		return 0;
	}
	if (a->n == a->refs_cap) {
		size_t cap = a->refs_cap ? a->refs_cap * 2 : 256;
		struct account_ref *r = realloc(a->refs, cap * sizeof(*r));

		if (r == NULL)
			return -1;
		a->refs = r;
		a->refs_cap = cap;
	}
	named = fullname_expand(pw->pw_gecos, pw->pw_name, name, sizeof(name));
	ref.key = accounts_add_text(a, pw->pw_name);
	ref.name = named ? accounts_add_text(a, name) : NO_NAME;
	if (ref.key == NO_NAME || (named && ref.name == NO_NAME))
		return -1;
	a->refs[a->n++] = ref;
	return 0;
}

static void accounts_free(struct accounts *a)
{
	free(a->text);
	free(a->refs);
	*a = (struct accounts){ 0 };
}

/* Getpwent(3)'s own errors; any other errno at the end is not one. */
static bool getpwent_failed(int e)
{
	return e == EINTR || e == EIO || e == EMFILE || e == ENFILE ||
	       e == ENOMEM || e == ERANGE;
}

static int accounts_read_system(struct accounts *a,
				const struct passwd_params *p, char *err,
				size_t errsize)
{
	struct passwd *pw;
	int rc = 0, e;

	setpwent();
	for (;;) {
		errno = 0;
		pw = getpwent();
		e = errno;
		if (pw == NULL || (rc = accounts_take(a, p, pw)) < 0)
			break;
	}
	endpwent();
	if (rc < 0 || (pw == NULL && getpwent_failed(e))) {
		passwd_errno(err, errsize, "passwd: " PASSWD_SYSTEM,
			     rc < 0 ? ENOMEM : e);
		return -1;
	}
	return 0;
}

static int accounts_read_file(struct accounts *a,
			      const struct passwd_params *p, char *err,
			      size_t errsize)
{
	FILE *fp = fopen(p->file, "re");
	struct passwd *pw;
	struct stat st;
	int e = 0;

	if (fp == NULL) {
		passwd_errno(err, errsize, p->file, errno);
		return -1;
	}
	if (fstat(fileno(fp), &st) < 0 || !S_ISREG(st.st_mode)) {
		str_error(err, errsize, "%s: not a regular file", p->file);
		fclose(fp);
		return -1;
	}
	while (e == 0 && (pw = fgetpwent(fp)) != NULL)
		if (accounts_take(a, p, pw) < 0)
			e = ENOMEM;
	if (e == 0 && ferror(fp))
		e = errno != 0 ? errno : EIO;
	fclose(fp);
	if (e != 0) {
		passwd_errno(err, errsize, p->file, e);
		return -1;
	}
	return 0;
}

/* The accounts kept, as table users pointing into a->text. */
static struct table_user *accounts_users(const struct accounts *a)
{
	struct table_user *u = calloc(a->n > 0 ? a->n : 1, sizeof(*u));

	for (size_t i = 0; u != NULL && i < a->n; i++) {
		u[i].key = a->text + a->refs[i].key;
		u[i].fullname = a->refs[i].name != NO_NAME ?
				a->text + a->refs[i].name : NULL;
	}
	return u;
}

static void log_skipped(const struct passwd_params *p,
			const struct accounts *a, size_t duplicates)
{
	char source[LOG_VALUE_MAX];

	if (a->bad_names == 0 && duplicates == 0)
		return;
	if (p->file[0] != '\0')
		log_escape(source, sizeof(source), p->file, strlen(p->file));
	else
		snprintf(source, sizeof(source), "system");
	log_event(LOG_LEVEL_WARN,
		  "event=passwd_skip source=\"%s\" bad_name=%zu duplicate=%zu",
		  source, a->bad_names, duplicates);
}

/* Build the in-memory index of the accounts kept: a table backend. */
static int accounts_index(const struct accounts *a,
			  const struct passwd_params *p, struct backend **be_r,
			  char *err, size_t errsize)
{
	struct table_user *users = accounts_users(a);
	size_t duplicates = 0;
	int rc;

	if (users == NULL) {
		passwd_errno(err, errsize, "passwd", ENOMEM);
		return -1;
	}
	rc = table_open_users(p->file[0] != '\0' ? p->file :
			      "passwd: " PASSWD_SYSTEM, users, a->n, be_r,
			      &duplicates, err, errsize);
	if (rc == 0)
		log_skipped(p, a, duplicates);
	free(users);
	return rc;
}

/* ---- the vtable ---- */

static int passwd_open(const char *args, const char *base_dir,
		       struct backend **be_r, char *err, size_t errsize)
{
	struct passwd_params p;
	struct accounts a = { 0 };
	int rc;

	*be_r = NULL;
	if (params_parse(args, base_dir, &p, err, errsize) < 0)
		return -1;
	rc = p.file[0] != '\0' ? accounts_read_file(&a, &p, err, errsize)
			       : accounts_read_system(&a, &p, err, errsize);
	if (rc < 0) {
		accounts_free(&a);
		return -1;
	}
	rc = accounts_index(&a, &p, be_r, err, errsize);
	accounts_free(&a);
	return rc;
}

static void passwd_lookup(struct backend *be, const struct dir_query *q,
			  backend_done_fn *done, void *arg)
{
	backend_table_ops.lookup(be, q, done, arg);
}

static size_t passwd_count(const struct backend *be)
{
	return backend_table_ops.count(be);
}

static void passwd_close(struct backend **be)
{
	backend_table_ops.close(be);
}

const struct backend_ops backend_passwd_ops = {
	.name = "passwd",
	.open = passwd_open,
	.lookup = passwd_lookup,
	.count = passwd_count,
	.close = passwd_close,
};
