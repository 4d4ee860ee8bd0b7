/*
 * fuzz_table — the `table` backend: the input is written to a file (on a
 * tmpfs when there is one), opened, and when it loads, looked up.
 *
 * A failed load must leave no backend and a terminated message naming the
 * file. A table that loads is read again here, the plain way (porterd.table(5):
 * KEY KIND VALUE, continuation lines start with a blank, '#' at the start
 * or after a blank comments out the rest), and every entry must answer:
 * its key finds it, with the same kind, the same members in the same
 * order, the same target, the same full name; and a user's full name,
 * asked by name, finds a user (or is ambiguous). Then words of the input
 * are asked as names, keys and addresses, and every answer must keep the
 * backend.h contract: one call, fields that fit the status, strings that
 * are NUL-terminated and no longer than a key may be.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/backend.h"
#include "porterd/command.h"

#include "fuzz_util.h"

#define MODEL_ENTRIES_MAX 512
#define MODEL_MEMBERS_MAX 4096
#define QUERY_MAX 300

static char *tmp_dir;
static char *table_path;

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
	size_t n;

	(void)argc;
	(void)argv;
	tmp_dir = fuzz_mkdtemp("table");
	n = strlen(tmp_dir) + sizeof("/fuzz.table");
	table_path = malloc(n);
	if (table_path == NULL)
		abort();
	snprintf(table_path, n, "%s/fuzz.table", tmp_dir);
	fuzz_set_cleanup(cleanup);
	return 0;
}

/* ---- the plain reading ---- */

enum { M_USER, M_LIST, M_FORWARD, M_MOVED };

struct span {
	const char *s;
	size_t len;
};

struct model_entry {
	struct span key;
	int kind;
	struct span words[64];	/* user: name words; forward/moved: [0] target */
	size_t nwords;		/* may exceed 64: then the name is not checked */
	size_t first, nmembers;	/* list: model.members[first ..] */
};

struct model {
	struct model_entry e[MODEL_ENTRIES_MAX];
	size_t n;
	struct span members[MODEL_MEMBERS_MAX];
	size_t nmembers;
	bool too_big;		/* more than the model holds: skip the check */
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool span_eq_nocase(struct span a, const char *b)
{
	size_t n = strlen(b);

	if (a.len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(a.s[i]) != lower(b[i]))
			return false;
	return true;
}

static int kind_of(struct span k)
{
	static const char *const names[] = { "user", "list", "forward", "moved" };

	for (int i = 0; i < 4; i++)
		if (span_eq_nocase(k, names[i]))
			return i;
	return -1;
}

/* Next token of [*p, e) split by `blank` (and commas when commas). */
static bool token(const char **p, const char *e, bool commas, struct span *t)
{
	const char *s = *p;

	while (s < e && (is_blank(*s) || (commas && *s == ',')))
		s++;
	if (s == e) {
		*p = s;
		return false;
	}
	t->s = s;
	while (s < e && !is_blank(*s) && !(commas && *s == ','))
		s++;
	t->len = (size_t)(s - t->s);
	*p = s;
	return true;
}

static void model_value(struct model *m, struct model_entry *me,
			const char *p, const char *e)
{
	struct span t;

	while (token(&p, e, me->kind != M_USER, &t)) {
		if (me->kind == M_USER) {
			if (me->nwords < 64)
				me->words[me->nwords] = t;
			me->nwords++;
		} else if (me->kind == M_LIST) {
			if (m->nmembers == MODEL_MEMBERS_MAX) {
				m->too_big = true;
				return;
			}
			m->members[m->nmembers++] = t;
			me->nmembers++;
		} else {
			if (t.len >= 2 && t.s[0] == '<' && t.s[t.len - 1] == '>') {
				t.s++;
				t.len -= 2;
			}
			me->words[0] = t;
			me->nwords++;
		}
	}
}

static void model_read(struct model *m, const char *buf, size_t len)
{
	const char *s = buf, *end = buf + len;
	struct model_entry *open = NULL;

	m->n = m->nmembers = 0;
	m->too_big = false;
	while (s < end && !m->too_big) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl != NULL ? nl : end, *p;
		struct span key, kind;

		if (e > s && e[-1] == '\r')
			e--;
		for (const char *c = s; c < e; c++) {
			if (*c == '#' && (c == s || is_blank(c[-1]))) {
				e = c;
				break;
			}
		}
		while (e > s && is_blank(e[-1]))
			e--;
		if (e > s && is_blank(*s)) {
			if (open == NULL)
				fuzz_fail("table: loaded with a continuation before any entry");
			model_value(m, open, s, e);
		} else if (e > s) {
			if (m->n == MODEL_ENTRIES_MAX) {
				m->too_big = true;
				break;
			}
			p = s;
			if (!token(&p, e, false, &key) || !token(&p, e, false, &kind))
				fuzz_fail("table: loaded a line without a kind");
			open = &m->e[m->n++];
			memset(open, 0, sizeof(*open));
			open->key = key;
			open->kind = kind_of(kind);
			open->first = m->nmembers;
			if (open->kind < 0)
				fuzz_fail("table: loaded an unknown kind");
			model_value(m, open, p, e);
		}
		s = nl != NULL ? nl + 1 : end;
	}
}

/* ---- answers ---- */

struct answer {
	int calls;
	struct dir_result res;
	char key[QUERY_MAX], fullname[4096], target[QUERY_MAX];
	const char *const *members;
};

static void check_string(const char *s, size_t max, const char *what)
{
	size_t n;

	if (s == NULL)
		fuzz_fail("table: %s is NULL", what);
	n = strnlen(s, max + 1);
	if (n == 0 || n > max)
		fuzz_fail("table: %s of %zu octets", what, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			fuzz_fail("table: control octet 0x%02x in %s", c, what);
	}
}

static void on_answer(const struct dir_result *r, void *arg)
{
	struct answer *a = arg;

	if (++a->calls != 1)
		fuzz_fail("table: answered %d times", a->calls);
	a->res = *r;
	if ((unsigned)r->status > DIR_TEMPFAIL)
		fuzz_fail("table: status %d", (int)r->status);
	if (r->status != DIR_USER && r->fullname != NULL)
		fuzz_fail("table: fullname with status %d", (int)r->status);
	if (r->status != DIR_LIST && (r->members != NULL || r->nmembers != 0))
		fuzz_fail("table: members with status %d", (int)r->status);
	if (r->status != DIR_FORWARD && r->status != DIR_MOVED && r->target != NULL)
		fuzz_fail("table: target with status %d", (int)r->status);
	a->key[0] = a->fullname[0] = a->target[0] = '\0';
	switch (r->status) {
	case DIR_USER:
	case DIR_LIST:
	case DIR_FORWARD:
	case DIR_MOVED:
		check_string(r->key, ADDRESS_PATH_MAX, "key");
		snprintf(a->key, sizeof(a->key), "%s", r->key);
		for (const char *s = r->key; *s != '\0'; s++)
			if (*s >= 'A' && *s <= 'Z')
				fuzz_fail("table: key '%s' not lowercase", r->key);
		break;
	default:
		if (r->key != NULL)
			fuzz_fail("table: key with status %d", (int)r->status);
		break;
	}
	if (r->status == DIR_USER && r->fullname != NULL) {
		size_t n = strlen(r->fullname);

		if (n == 0 || r->fullname[0] == ' ' || r->fullname[n - 1] == ' ' ||
		    strstr(r->fullname, "  ") != NULL || strchr(r->fullname, '\t') != NULL)
			fuzz_fail("table: full name '%s' not words one space apart",
				  r->fullname);
		snprintf(a->fullname, sizeof(a->fullname), "%s", r->fullname);
	}
	if (r->status == DIR_LIST) {
		if (r->nmembers == 0 || r->members == NULL)
			fuzz_fail("table: a list with no members");
		for (size_t i = 0; i < r->nmembers; i++)
			check_string(r->members[i], ADDRESS_PATH_MAX, "member");
		a->members = r->members;
	}
	if (r->status == DIR_FORWARD || r->status == DIR_MOVED) {
		check_string(r->target, ADDRESS_PATH_MAX, "target");
		if (strchr(r->target, '@') == NULL)
			fuzz_fail("table: target '%s' without '@'", r->target);
		snprintf(a->target, sizeof(a->target), "%s", r->target);
	}
}

static struct answer ask(struct backend *be, const char *address,
			 const char *local, bool by_name)
{
	struct dir_query q = { .address = address, .local = local, .by_name = by_name };
	struct answer a;

	memset(&a, 0, sizeof(a));
	backend_table_ops.lookup(be, &q, on_answer, &a);
	if (a.calls != 1)
		fuzz_fail("table: lookup answered %d times, synchronously", a.calls);
	return a;
}

static void span_lower(struct span t, char *out, size_t size)
{
	size_t n = t.len < size - 1 ? t.len : size - 1;

	for (size_t i = 0; i < n; i++)
		out[i] = lower(t.s[i]);
	out[n] = '\0';
}

/* A user's full name is its words one space apart, and asked by name
 * (the client's case folded, as the directory does) it finds someone. */
static void check_name(struct backend *be, const struct model_entry *me,
		       const char *key, const struct answer *a)
{
	char name[4096];
	size_t len = 0;

	for (size_t j = 0; j < me->nwords; j++) {
		const struct span *w = &me->words[j];

		if (len + 1 + w->len >= sizeof(name))
			return;	/* longer than checked here */
		if (j > 0)
			name[len++] = ' ';
		memcpy(name + len, w->s, w->len);
		len += w->len;
	}
	name[len] = '\0';
	if (me->nwords == 0 ? a->res.fullname != NULL
			    : strcmp(a->fullname, name) != 0)
		fuzz_fail("table: user '%s' full name '%s', the file '%s'",
			  key, a->fullname, name);
	if (me->nwords > 0 && me->nwords <= 16 && len < COMMAND_LINE_MAX) {
		struct answer b;

		for (size_t j = 0; j < len; j++)
			name[j] = lower(name[j]);
		b = ask(be, NULL, name, true);
		if (b.res.status == DIR_NOTFOUND || b.res.status == DIR_TEMPFAIL)
			fuzz_fail("table: full name '%s' of '%s' answers %d", name,
				  key, (int)b.res.status);
	}
}

/* Every entry the plain reading found answers as it says. */
static void check_entries(struct backend *be, const struct model *m)
{
	char key[QUERY_MAX], want[QUERY_MAX];
	static const enum dir_status status[] = { DIR_USER, DIR_LIST, DIR_FORWARD,
						  DIR_MOVED };

	if (backend_table_ops.count(be) != m->n)
		fuzz_fail("table: count %zu, the file has %zu entries",
			  backend_table_ops.count(be), m->n);
	for (size_t i = 0; i < m->n; i++) {
		const struct model_entry *me = &m->e[i];
		struct answer a;

		span_lower(me->key, key, sizeof(key));
		a = ask(be, NULL, key, false);
		if (a.res.status != status[me->kind] || strcmp(a.key, key) != 0)
			fuzz_fail("table: key '%s' (line entry %zu) answers %d '%s'",
				  key, i, (int)a.res.status, a.key);
		if (me->kind == M_LIST) {
			if (a.res.nmembers != me->nmembers)
				fuzz_fail("table: list '%s' has %zu members, the file %zu",
					  key, a.res.nmembers, me->nmembers);
			for (size_t j = 0; j < me->nmembers; j++) {
				span_lower(m->members[me->first + j], want, sizeof(want));
				if (strcmp(a.members[j], want) != 0)
					fuzz_fail("table: list '%s' member %zu is '%s', the file '%s'",
						  key, j, a.members[j], want);
			}
		} else if (me->kind != M_USER) {
			span_lower(me->words[0], want, sizeof(want));
			if (me->nwords != 1 || strcmp(a.target, want) != 0)
				fuzz_fail("table: '%s' target '%s', the file '%s'", key,
					  a.target, want);
		} else if (me->nwords <= 64) {
			check_name(be, me, key, &a);
		}
	}
}

/* Words of the input, asked as names, keys and addresses. */
static void ask_words(struct backend *be, const char *buf, size_t len)
{
	const char *p = buf, *e = buf + len;
	char w[8][QUERY_MAX];
	size_t n = 0;

	while (n < 8 && p < e) {
		size_t k = 0;

		while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' ||
				 *p == ',' || *p == '<' || *p == '>' || *p == '\0'))
			p++;
		for (; p < e && k < ADDRESS_PATH_MAX && *p != ' ' && *p != '\t' &&
		     *p != '\n' && *p != '\r' && *p != ',' && *p != '\0'; p++)
			w[n][k++] = lower(*p);
		w[n][k] = '\0';
		if (k > 0)
			n++;
	}
	for (size_t i = 0; i < n; i++) {
		char addr[QUERY_MAX * 2], two[QUERY_MAX * 2];
		const char *at = strchr(w[i], '@');

		ask(be, NULL, w[i], true);
		ask(be, NULL, w[i], false);
		snprintf(addr, sizeof(addr), "%s@example.test", w[i]);
		ask(be, addr, w[i], false);
		if (at != NULL) {
			char local[QUERY_MAX];

			snprintf(local, sizeof(local), "%.*s", (int)(at - w[i]), w[i]);
			ask(be, w[i], local, false);
		}
		if (i + 1 < n) {
			snprintf(two, sizeof(two), "%s %s", w[i], w[i + 1]);
			ask(be, NULL, two, true);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct model m;
	struct backend *be = (struct backend *)1;
	char err[512];
	int rc;

	fuzz_write_file(table_path, data, size);
	memset(err, 0x55, sizeof(err));
	rc = backend_table_ops.open(table_path, NULL, &be, err, sizeof(err));
	if (rc < 0) {
		if (be != NULL)
			fuzz_fail("table: failed open left a backend");
		if (memchr(err, '\0', sizeof(err)) == NULL)
			fuzz_fail("table: error message not terminated");
		if (strncmp(err, table_path, strlen(table_path)) != 0)
			fuzz_fail("table: error '%s' does not name the file", err);
		return 0;
	}
	if (be == NULL)
		fuzz_fail("table: open succeeded without a backend");
	model_read(&m, (const char *)data, size);
	if (!m.too_big)
		check_entries(be, &m);
	ask_words(be, (const char *)data, size);
	backend_table_ops.close(&be);
	if (be != NULL)
		fuzz_fail("table: close did not clear the pointer");
	return 0;
}
