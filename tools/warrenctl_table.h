/* warrenctl_table.h — warrenctl's output of lists: rows of JSON objects from the management
 * API shown as an aligned table, tab-separated values or a JSON array, under rabbitmqctl's
 * column names. Owns nothing past a call; does not know verbs or HTTP.
 * Invariant: every row prints exactly ncols cells, in the order of cols. */
#ifndef WARREN_TOOLS_WARRENCTL_TABLE_H
#define WARREN_TOOLS_WARRENCTL_TABLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

typedef enum table_fmt { TABLE_FMT_TABLE, TABLE_FMT_JSON, TABLE_FMT_TSV, TABLE_FMT_MAX } table_fmt_t;

typedef struct column {
    const char *title; /* borrowed: the rabbitmqctl name, printed as header and JSON key */
    const char *path;  /* borrowed: dotted path in the API's object, or "=text" for a constant */
} column_t;

/* The format named name ("table", "json", "tsv"), or -1. */
int table_fmt_parse(const char *name);

/* The value at path (dotted, or "=text") in row as text (strings as they are, lists of strings as
 * "[a, b]", other lists and objects as compact JSON, absent or null as ""); NULL when out of
 * memory. The caller frees it. */
char *table_cell(json_t *row, const char *path);

/* Prints rows (an array of objects) to out as fmt, with a header line when headers. Returns 0
 * or -ENOMEM. */
int table_print(FILE *out, json_t *rows, const struct column *cols, size_t ncols,
                enum table_fmt fmt, bool headers);

#endif
