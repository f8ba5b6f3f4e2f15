/*
 * random_bytes.c - getrandom(2), else /dev/urandom, else abort.
 */
#include "random_bytes.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

/* getrandom(2) only fails before the entropy pool is ready on ancient
 * kernels (ENOSYS); what it keys must be unguessable, so never fall back to
 * anything weaker than /dev/urandom, and give up loudly when that fails. */
void random_bytes(uint8_t *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        got += (size_t)r;
    }
    if (got == n)
        return;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (fd >= 0)
        close(fd);
    if (got != n) {
        fputs("aeroarc-relay: no source of random bytes\n", stderr);
        abort();
    }
}
