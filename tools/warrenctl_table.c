/* warrenctl_table.c — warrenctl's list printer: picks each column's value out of the API's
 * JSON objects (dotted paths, constants), renders it as rabbitmqctl shows it, and lays rows
 * out as a padded table, TSV or a JSON array. Does not fetch anything.
 * Invariant: cells never contain a tab or a newline (escaped as \t and \n). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "warrenctl_table.h"

int table_fmt_parse(const char *name)
{
    static const char *const names[TABLE_FMT_MAX] = {"table", "json", "tsv"};
    for (int i = 0; i < TABLE_FMT_MAX; i++)
        if (!strcmp(name, names[i]))
            return i;
    return -1;
}

/* The value at the dotted path in row (borrowed), or NULL. */
static json_t *lookup(json_t *row, const char *path)
{
    json_t *v = row;
    while (v && *path) {
        size_t n = strcspn(path, ".");
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        v = json_object_get(v, key);
        path += n + (path[n] == '.');
    }
    return v;
}

static bool all_strings(json_t *a)
{
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
        if (!json_is_string(e))
            return false;
    return true;
}

static void put_escaped(FILE *out, const char *s)
{
    for (; *s; s++)
        if (*s == '\t')
            fputs("\\t", out);
        else if (*s == '\n')
            fputs("\\n", out);
        else
            fputc(*s, out);
}

char *table_cell(json_t *row, const char *path)
{
    if (path[0] == '=')
        return strdup(path + 1);
    json_t *v = lookup(row, path);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return NULL;
    if (json_is_string(v)) {
        put_escaped(out, json_string_value(v));
    } else if (json_is_array(v) && all_strings(v)) {
        size_t i;
        json_t *e;
        fputc('[', out);
        json_array_foreach(v, i, e) {
            fputs(i ? ", " : "", out);
            put_escaped(out, json_string_value(e));
        }
        fputc(']', out);
    } else if (v && !json_is_null(v)) {
        json_dumpf(v, out, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int print_json(FILE *out, json_t *rows, const struct column *cols, size_t ncols)
{
    json_t *a = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        json_t *o = json_object();
        for (size_t c = 0; o && c < ncols; c++) {
            const char *p = cols[c].path;
            json_t *v = p[0] == '=' ? json_string(p + 1) : json_incref(lookup(row, p));
            json_object_set_new(o, cols[c].title, v ? v : json_null());
        }
        json_array_append_new(a, o);
    }
    int rc = a && json_dumpf(a, out, JSON_INDENT(2)) == 0 ? 0 : -ENOMEM;
    fputc('\n', out);
    json_decref(a);
    return rc;
}

/* Display width of a UTF-8 string (code points). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

int table_print(FILE *out, json_t *rows, const struct column *cols, size_t ncols,
                enum table_fmt fmt, bool headers)
{
    if (fmt == TABLE_FMT_JSON)
        return print_json(out, rows, cols, ncols);
    size_t nrows = json_array_size(rows), n = (nrows + 1) * ncols;
    char **cell = calloc(n ? n : 1, sizeof *cell);
    size_t *w = calloc(ncols ? ncols : 1, sizeof *w);
    int rc = cell && w ? 0 : -ENOMEM;
    for (size_t c = 0; !rc && c < ncols; c++)
        if (!(cell[c] = strdup(cols[c].title)))
            rc = -ENOMEM;
    for (size_t r = 0; !rc && r < nrows; r++)
        for (size_t c = 0; !rc && c < ncols; c++)
            if (!(cell[(r + 1) * ncols + c] = table_cell(json_array_get(rows, r), cols[c].path)))
                rc = -ENOMEM;
    for (size_t i = 0; !rc && i < n; i++)
        if (width(cell[i]) > w[i % ncols])
            w[i % ncols] = width(cell[i]);
    for (size_t i = headers ? 0 : ncols; !rc && i < n; i++) {
        size_t c = i % ncols;
        bool last = c + 1 == ncols;
        if (fmt == TABLE_FMT_TSV || last)
            fprintf(out, "%s%c", cell[i], last ? '\n' : '\t');
        else
            fprintf(out, "%s%*s", cell[i], (int)(w[c] - width(cell[i]) + 2), "");
    }
    for (size_t i = 0; cell && i < n; i++)
        free(cell[i]);
    free(cell);
    free(w);
    return rc;
}
