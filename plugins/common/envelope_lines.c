/*
 * envelope_lines.c - see envelope_lines.h. No state beyond the caller's
 * struct.
 */
#include "envelope_lines.h"

#include <errno.h>
#include <stdlib.h>

int envelope_lines_init(struct envelope_lines *l, size_t cap)
{
    l->buf = malloc(cap);
    l->cap = l->buf != NULL ? cap : 0;
    return l->buf != NULL ? 0 : -ENOMEM;
}

/* Makes room for `need` more bytes after `used`: 0 or -ENOMEM. Doubling
 * keeps a batch of many small lines from reallocating on each one. */
static int reserve(struct envelope_lines *l, size_t used, size_t need)
{
    if (l->cap - used >= need)
        return 0;
    size_t cap = l->cap * 2;
    if (cap < used + need)
        cap = used + need;
    char *p = realloc(l->buf, cap);
    if (p == NULL)
        return -ENOMEM;
    l->buf = p;
    l->cap = cap;
    return 0;
}

int envelope_lines_append(struct envelope_lines *l, const aero_host *h,
                          const aero_frame *f, size_t *used)
{
    size_t room = l->cap - *used;
    size_t n = h->envelope_json(h, f, l->buf + *used, room);

    if (n >= room) {
        /* +1 for the NUL the encoder writes where the newline goes. */
        if (reserve(l, *used, n + 1) != 0)
            return -ENOMEM;
        room = l->cap - *used;
        n = h->envelope_json(h, f, l->buf + *used, room);
        if (n >= room)
            return -ENOMEM; /* the encoder broke its contract */
    }
    l->buf[*used + n] = '\n';
    *used += n + 1;
    return 0;
}

void envelope_lines_free(struct envelope_lines *l)
{
    free(l->buf);
    l->buf = NULL;
    l->cap = 0;
}
