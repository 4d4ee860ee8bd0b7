/*
 * fuzz_passwd — the `passwd` backend on a passwd(5) file: byte 0 picks
 * the parameters (min_uid, max_uid, hide_nologin, file= absolute or
 * relative to the base directory), the rest is written to a file (on a
 * tmpfs when there is one) and opened as `directory passwd file=PATH ...`
 * would open it.
 *
 * A failed open must leave no backend and a terminated message naming
 * the backend or the file. An open that succeeds is checked against a
 * plain reading of the file, of the lines it can read without doubt
 * (name:passwd:uid:gid:gecos:dir:shell, uid and gid plain decimal): every
 * account in the uid range, with a usable login (a dot-string of ASCII
 * atext, at most 64 octets, not a '+'/'-' compat entry) and, with
 * hide_nologin=yes, a shell that allows logins, is found by its login as
 * a user; its full name (GECOS up to the first comma, '&' the login
 * capitalised), asked by name, finds a user or is ambiguous. Accounts
 * out of range or hidden are not found under a login no other line
 * names. Then words of the input are asked as logins, names and
 * addresses, and every answer must keep backend.h's contract: one call,
 * only user, ambiguous or not found, fields that fit the status, strings
 * that are NUL-terminated, bounded and free of control octets.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/backend.h"
#include "porterd/command.h"
#include "porterd/log.h"

#include "fuzz_util.h"

#define LOGIN_MAX 64			/* ADDRESS_LOCAL_MAX */
#define FULLNAME_MAX 1024		/* longer GECOS names are not used */
#define QUERY_MAX 600
#define NAME_WORDS_MAX 16		/* as fuzz_table checks names */

static char *tmp_dir;
static char *passwd_path;

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
	static FILE *devnull;
	size_t n;

	(void)argc;
	(void)argv;
	/* The skipped-accounts log line is formatted, then thrown away. */
	devnull = fopen("/dev/null", "w");
	log_init(LOG_LEVEL_DEBUG, devnull != NULL ? devnull : stderr);
	tmp_dir = fuzz_mkdtemp("passwd");
	n = strlen(tmp_dir) + sizeof("/passwd");
	passwd_path = malloc(n);
	if (passwd_path == NULL)
		abort();
	snprintf(passwd_path, n, "%s/passwd", tmp_dir);
	fuzz_set_cleanup(cleanup);
	return 0;
}

/* ---- parameters from byte 0 ---- */

struct params {
	unsigned long min_uid, max_uid;
	bool hide_nologin;
	char args[256];
	const char *base_dir;
};

static void params_pick(uint8_t b, struct params *p)
{
	static const unsigned long mins[] = { 1000, 0, 100, 65534 };
	static const unsigned long maxs[] = { 60000, 4294967294UL, 1000, 65534 };
	static const char *const hide[] = { "", " hide_nologin=yes", " hide_nologin=no" };
	int given_min = b % 4 != 0, given_max = b / 4 % 4 != 0;
	bool relative = b / 48 % 2;
	size_t o;

	p->min_uid = mins[b % 4];
	p->max_uid = maxs[b / 4 % 4];
	p->hide_nologin = b / 16 % 3 == 1;
	p->base_dir = relative ? tmp_dir : "/nonexistent-base";
	o = (size_t)snprintf(p->args, sizeof(p->args), "file=%s%s",
			     relative ? "passwd" : passwd_path, hide[b / 16 % 3]);
	if (given_min)
		o += (size_t)snprintf(p->args + o, sizeof(p->args) - o,
				      " min_uid=%lu", p->min_uid);
	if (given_max)
		snprintf(p->args + o, sizeof(p->args) - o, " max_uid=%lu", p->max_uid);
}

/* ---- the plain reading ---- */

struct span {
	const char *s;
	size_t len;
};

/* One line read without doubt: the fields it has. */
struct account {
	struct span name, gecos, shell;
	unsigned long uid;
};

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
	       c == '\r';
}

/* A login porterd may be asked for (RFC 5321 dot-string, ASCII atext). */
static bool login_usable(struct span n)
{
	if (n.len == 0 || n.len > LOGIN_MAX || n.s[0] == '+' || n.s[0] == '-' ||
	    n.s[0] == '.' || n.s[n.len - 1] == '.')
		return false;
	for (size_t i = 0; i < n.len; i++) {
		char c = n.s[i];

		if (c == '.') {
			if (n.s[i + 1] == '.')
				return false;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL))
			return false;
	}
	return true;
}

/* A uid or gid the C library reads the same as this does: 1-10 digits,
 * at most 4294967295. */
static bool plain_number(struct span f, unsigned long *v_r)
{
	unsigned long long v = 0;

	if (f.len == 0 || f.len > 10)
		return false;
	for (size_t i = 0; i < f.len; i++) {
		if (f.s[i] < '0' || f.s[i] > '9')
			return false;
		v = v * 10 + (unsigned long long)(f.s[i] - '0');
	}
	if (v > 4294967295ULL)
		return false;
	*v_r = (unsigned long)v;
	return true;
}

/* The line after its leading white space (as the C library skips it):
 * false for blank lines and comments. */
static bool line_body(const char *s, const char *e, struct span *body)
{
	while (s < e && is_space(*s))
		s++;
	if (s == e || *s == '#')
		return false;
	body->s = s;
	body->len = (size_t)(e - s);
	return true;
}

/* The login field of any line, read or not: up to its first colon. */
static struct span line_login(struct span body)
{
	const char *colon = memchr(body.s, ':', body.len);

	return (struct span){ body.s, colon != NULL ? (size_t)(colon - body.s)
						    : body.len };
}

/* Seven fields or more (the shell takes the rest), no NUL, plain numbers. */
static bool account_read(struct span body, struct account *a)
{
	struct span f[7];
	const char *s = body.s, *e = body.s + body.len;
	unsigned long gid;

	if (memchr(body.s, '\0', body.len) != NULL)
		return false;
	for (int i = 0; i < 6; i++) {
		const char *colon = memchr(s, ':', (size_t)(e - s));

		if (colon == NULL)
			return false;
		f[i] = (struct span){ s, (size_t)(colon - s) };
		s = colon + 1;
	}
	f[6] = (struct span){ s, (size_t)(e - s) };
	a->name = f[0];
	a->gecos = f[4];
	a->shell = f[6];
	return plain_number(f[2], &a->uid) && plain_number(f[3], &gid);
}

static bool span_eq(struct span a, const char *b)
{
	return a.len == strlen(b) && memcmp(a.s, b, a.len) == 0;
}

static bool shell_is_nologin(struct span shell)
{
	return span_eq(shell, "/usr/sbin/nologin") || span_eq(shell, "/sbin/nologin") ||
	       span_eq(shell, "/bin/false") || span_eq(shell, "/usr/bin/false");
}

static bool account_served(const struct params *p, const struct account *a)
{
	return login_usable(a->name) && a->uid >= p->min_uid &&
	       a->uid <= p->max_uid && !(p->hide_nologin && shell_is_nologin(a->shell));
}

static bool span_eq_nocase(struct span a, struct span b)
{
	if (a.len != b.len)
		return false;
	for (size_t i = 0; i < a.len; i++)
		if (lower(a.s[i]) != lower(b.s[i]))
			return false;
	return true;
}

/* ---- answers ---- */

struct answer {
	int calls;
	struct dir_result res;
	char key[QUERY_MAX], fullname[FULLNAME_MAX * 2];
};

static void check_string(const char *s, size_t max, const char *what)
{
	size_t n;

	if (s == NULL)
		fuzz_fail("passwd: %s is NULL", what);
	n = strnlen(s, max + 1);
	if (n == 0 || n > max)
		fuzz_fail("passwd: %s of %zu octets", what, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			fuzz_fail("passwd: control octet 0x%02x in %s", c, what);
	}
}

static void on_answer(const struct dir_result *r, void *arg)
{
	struct answer *a = arg;

	if (++a->calls != 1)
		fuzz_fail("passwd: answered %d times", a->calls);
	a->res = *r;
	a->key[0] = a->fullname[0] = '\0';
	if (r->status != DIR_USER && r->status != DIR_AMBIGUOUS &&
	    r->status != DIR_NOTFOUND)
		fuzz_fail("passwd: status %d", (int)r->status);
	if (r->target != NULL || r->members != NULL || r->nmembers != 0)
		fuzz_fail("passwd: target or members with status %d", (int)r->status);
	if (r->status != DIR_USER) {
		if (r->key != NULL || r->fullname != NULL)
			fuzz_fail("passwd: key or name with status %d", (int)r->status);
		return;
	}
	check_string(r->key, LOGIN_MAX, "key");
	for (const char *s = r->key; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			fuzz_fail("passwd: key '%s' not lowercase", r->key);
	snprintf(a->key, sizeof(a->key), "%s", r->key);
	if (r->fullname != NULL) {
		size_t n;

		check_string(r->fullname, FULLNAME_MAX, "full name");
		n = strlen(r->fullname);
		if (r->fullname[0] == ' ' || r->fullname[n - 1] == ' ' ||
		    strstr(r->fullname, "  ") != NULL || strchr(r->fullname, '\t') != NULL)
			fuzz_fail("passwd: full name '%s' not words one space apart",
				  r->fullname);
		snprintf(a->fullname, sizeof(a->fullname), "%s", r->fullname);
	}
}

static struct answer ask(struct backend *be, const char *address,
			 const char *local, bool by_name)
{
	struct dir_query q = { .address = address, .local = local, .by_name = by_name };
	struct answer a;

	memset(&a, 0, sizeof(a));
	backend_passwd_ops.lookup(be, &q, on_answer, &a);
	if (a.calls != 1)
		fuzz_fail("passwd: lookup answered %d times, synchronously", a.calls);
	return a;
}

/* ---- checks against the plain reading ---- */

/* Lines whose login field is name's, in any case: read or not. */
static size_t login_lines(const char *buf, size_t len, struct span name)
{
	const char *s = buf, *end = buf + len;
	size_t n = 0;

	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl != NULL ? nl : end;
		struct span body;

		if (line_body(s, e, &body) && span_eq_nocase(line_login(body), name))
			n++;
		s = nl != NULL ? nl + 1 : end;
	}
	return n;
}

/* The full name as the words of GECOS up to its first comma, '&' the
 * login capitalised, one space apart; its word count in *words_r. False
 * when there is none or it is longer than FULLNAME_MAX (then none is
 * used). size > FULLNAME_MAX + 1. */
static bool fullname_plain(const struct account *a, char *out, size_t size,
			   size_t *words_r)
{
	char raw[FULLNAME_MAX + 1];
	size_t rlen = 0, olen = 0;
	bool gap = false;

	for (size_t i = 0; i < a->gecos.len && a->gecos.s[i] != ','; i++) {
		const char *add = a->gecos.s[i] == '&' ? a->name.s : &a->gecos.s[i];
		size_t n = a->gecos.s[i] == '&' ? a->name.len : 1;

		if (n >= sizeof(raw) - rlen)
			return false;	/* over the bound: no full name */
		memcpy(raw + rlen, add, n);
		if (a->gecos.s[i] == '&' && raw[rlen] >= 'a' && raw[rlen] <= 'z')
			raw[rlen] = (char)(raw[rlen] - 'a' + 'A');
		rlen += n;
	}
	*words_r = 0;
	for (size_t i = 0; i < rlen; i++) {
		unsigned char c = (unsigned char)raw[i];

		if (c == ' ' || c == '\t' || c < 0x20 || c == 0x7f) {
			gap = olen > 0;
			continue;
		}
		if (olen + 2 >= size)
			fuzz_fail("passwd: full name buffer too small");
		if (gap || olen == 0)
			(*words_r)++;
		if (gap)
			out[olen++] = ' ';
		gap = false;
		out[olen++] = (char)c;
	}
	out[olen] = '\0';
	return olen > 0;
}

static void span_lower(struct span t, char *out, size_t size)
{
	size_t n = t.len < size - 1 ? t.len : size - 1;

	for (size_t i = 0; i < n; i++)
		out[i] = lower(t.s[i]);
	out[n] = '\0';
}

/* A served account's full name is its line's, and asked by name (the
 * client's case folded, as the directory does) it finds someone. */
static void check_fullname(struct backend *be, const struct account *a,
			   const char *login, const struct answer *r)
{
	char name[FULLNAME_MAX + 2];
	size_t words;

	if (!fullname_plain(a, name, sizeof(name), &words)) {
		if (r->res.fullname != NULL)
			fuzz_fail("passwd: '%s' has full name '%s', the file none",
				  login, r->fullname);
		return;
	}
	if (strcmp(r->fullname, name) != 0)
		fuzz_fail("passwd: '%s' full name '%s', the file '%s'", login,
			  r->fullname, name);
	if (words <= NAME_WORDS_MAX && strlen(name) < COMMAND_LINE_MAX) {
		struct answer b;

		for (size_t i = 0; name[i] != '\0'; i++)
			name[i] = lower(name[i]);
		b = ask(be, NULL, name, true);
		if (b.res.status != DIR_USER && b.res.status != DIR_AMBIGUOUS)
			fuzz_fail("passwd: full name '%s' of '%s' answers %d", name,
				  login, (int)b.res.status);
	}
}

static void check_account(struct backend *be, const struct params *p,
			  const struct account *a, const char *buf, size_t len)
{
	char login[ADDRESS_PATH_MAX + 1];
	bool unique = login_lines(buf, len, a->name) == 1;
	struct answer r;

	if (a->name.len == 0 || a->name.len > ADDRESS_PATH_MAX)
		return;
	span_lower(a->name, login, sizeof(login));
	r = ask(be, NULL, login, false);
	if (!account_served(p, a)) {
		if (r.res.status != DIR_NOTFOUND && unique)
			fuzz_fail("passwd: '%s' (uid %lu) served: out of range, hidden "
				  "or not a local part", login, a->uid);
		return;
	}
	if (r.res.status != DIR_USER || strcmp(r.key, login) != 0)
		fuzz_fail("passwd: account '%s' (uid %lu) answers %d '%s'", login,
			  a->uid, (int)r.res.status, r.key);
	/* A login on one line only: its full name is that line's. */
	if (unique)
		check_fullname(be, a, login, &r);
}

/* Every line read without doubt answers as it says. */
static void check_lines(struct backend *be, const struct params *p,
			const char *buf, size_t len)
{
	const char *s = buf, *end = buf + len;
	size_t served = 0;

	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl != NULL ? nl : end;
		struct span body;
		struct account a;

		if (line_body(s, e, &body) && account_read(body, &a)) {
			check_account(be, p, &a, buf, len);
			served += account_served(p, &a);
		}
		s = nl != NULL ? nl + 1 : end;
	}
	if (served > 0 && backend_passwd_ops.count(be) == 0)
		fuzz_fail("passwd: count 0, %zu accounts served", served);
}

/* Words of the input, asked as logins, names and addresses. */
static void ask_words(struct backend *be, const char *buf, size_t len)
{
	const char *p = buf, *e = buf + len;
	char w[8][QUERY_MAX / 2];
	size_t n = 0;

	while (n < 8 && p < e) {
		size_t k = 0;

		while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == ':' ||
				 *p == ',' || *p == '\0'))
			p++;
		for (; p < e && k < ADDRESS_PATH_MAX && *p != ' ' && *p != '\t' &&
		     *p != '\n' && *p != ':' && *p != ',' && *p != '\0'; p++)
			w[n][k++] = lower(*p);
		w[n][k] = '\0';
		if (k > 0)
			n++;
	}
	for (size_t i = 0; i < n; i++) {
		char addr[QUERY_MAX], two[QUERY_MAX];

		ask(be, NULL, w[i], true);
		ask(be, NULL, w[i], false);
		snprintf(addr, sizeof(addr), "%s@example.test", w[i]);
		ask(be, addr, w[i], false);
		if (i + 1 < n) {
			snprintf(two, sizeof(two), "%s %s", w[i], w[i + 1]);
			ask(be, NULL, two, true);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct backend *be = (struct backend *)1;
	struct params p;
	char err[512];
	const char *text;
	size_t len;
	int rc;

	if (size < 1)
		return 0;
	params_pick(data[0], &p);
	text = (const char *)data + 1;
	len = size - 1;
	fuzz_write_file(passwd_path, text, len);
	memset(err, 0x55, sizeof(err));
	rc = backend_passwd_ops.open(p.args, p.base_dir, &be, err, sizeof(err));
	if (rc < 0) {
		if (be != NULL)
			fuzz_fail("passwd: failed open left a backend");
		if (memchr(err, '\0', sizeof(err)) == NULL)
			fuzz_fail("passwd: error message not terminated");
		if (strncmp(err, "passwd: ", 8) != 0 &&
		    strncmp(err, passwd_path, strlen(passwd_path)) != 0)
			fuzz_fail("passwd: error '%s' names neither backend nor file", err);
		if (p.min_uid <= p.max_uid)
			fuzz_fail("passwd: open failed with good parameters: %s", err);
		return 0;
	}
	if (be == NULL)
		fuzz_fail("passwd: open succeeded without a backend");
	if (p.min_uid > p.max_uid)
		fuzz_fail("passwd: min_uid %lu above max_uid %lu accepted", p.min_uid,
			  p.max_uid);
	check_lines(be, &p, text, len);
	ask_words(be, text, len);
	backend_passwd_ops.close(&be);
	if (be != NULL)
		fuzz_fail("passwd: close did not clear the pointer");
	return 0;
}
