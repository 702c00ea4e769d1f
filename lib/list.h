/* list.h — intrusive circular doubly-linked lists (uv__queue style): membership costs no
 * allocation. A list head is a struct list whose next/prev point to itself when empty. */
#ifndef WARREN_LIST_H
#define WARREN_LIST_H
#include <stdbool.h>
#include <stddef.h>

struct list {
    struct list *next, *prev;
};
#define list_entry(ptr, type, field) ((type *)((char *)(ptr) - offsetof(type, field)))
static inline void list_init(struct list *h) { h->next = h->prev = h; }
static inline bool list_empty(const struct list *h) { return h->next == h; }
static inline void list_insert_tail(struct list *h, struct list *n)
{
    n->next = h;
    n->prev = h->prev;
    h->prev->next = n;
    h->prev = n;
}
static inline void list_remove(struct list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}
/* Walks the list; the body must not remove pos (list_foreach_safe may). */
#define list_foreach(pos, head) for (pos = (head)->next; pos != (head); pos = pos->next)
#define list_foreach_safe(pos, tmp, head) \
    for (pos = (head)->next, tmp = pos->next; pos != (head); pos = tmp, tmp = pos->next)

#endif
