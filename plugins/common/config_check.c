/*
 * config_check.c - see config_check.h. Opens a file only to prove it can
 * be read, and closes it at once.
 */
#include "config_check.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int config_check_host(const aero_host *host, const char *plugin)
{
    if (AERO_HAS(host, aero_host, config_error))
        return 1;
    host->log(host, AERO_LOG_ERROR, "%s: needs a relay of plugin ABI 1.1 or later", plugin);
    return 0;
}

const char *config_check_str(const aero_host *host, const char *key)
{
    const char *v = host->config_get(host, key);
    return v ? v : "";
}

int config_check_readable_file(const aero_host *host, const char *key)
{
    const char *path = config_check_str(host, key);
    struct stat st;

    if (!*path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        host->config_error(host, key, "cannot read \"%s\": %s", path, strerror(errno));
        return -1;
    }
    int rc = fstat(fd, &st);
    int err = errno;
    close(fd);
    if (rc != 0) {
        host->config_error(host, key, "cannot read \"%s\": %s", path, strerror(err));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        host->config_error(host, key, "\"%s\" is not a regular file", path);
        return -1;
    }
    return 0;
}
