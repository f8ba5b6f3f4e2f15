/*
 * plugin_loader.c - libltdl-based plugin loading and ABI checks. Plugins are
 * opened RTLD_LOCAL-style (lt_dlopenadvise with local) so no plugin can bind
 * to another's symbols. The only file that includes ltdl.h.
 */
#include "plugin_loader.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <errno.h>
#include <limits.h>
#include <ltdl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef AERO_PLUGIN_INSTALL_DIR
#define AERO_PLUGIN_INSTALL_DIR "/usr/lib/aeroarc/plugins"
#endif

static pthread_once_t ltdl_once = PTHREAD_ONCE_INIT;
static int ltdl_init_rc;

static void ltdl_init(void) { ltdl_init_rc = lt_dlinit(); }

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

size_t plugin_search_dirs(const char *configured, char dirs[][4096], size_t max)
{
    size_t n = 0;
    if (configured && *configured) {
        snprintf(dirs[n++], 4096, "%s", configured);
        return n;
    }
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len > 0 && n < max) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(dirs[n], 4096, "%.4000s/plugins", exe);
            if (is_dir(dirs[n]))
                n++;
        }
    }
    if (n < max)
        snprintf(dirs[n++], 4096, "%s", AERO_PLUGIN_INSTALL_DIR);
    return n;
}

/* Plugin names become file names: allow nothing that could leave the dir. */
static int name_valid(const char *name)
{
    if (!name || !*name || strlen(name) > 64)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return name[0] != '.';
}

static const char *kind_name(aero_plugin_kind kind)
{
    return kind == AERO_PLUGIN_SINK ? "sink" : kind == AERO_PLUGIN_ROUTE ? "route" : "unknown";
}

static int find_file(const char *name, const char *configured, char *path, size_t pathlen,
                     char *err, size_t errlen)
{
    char dirs[4][4096];
    size_t n = plugin_search_dirs(configured, dirs, 4);
    char looked[1024] = "";
    for (size_t i = 0; i < n; i++) {
        snprintf(path, pathlen, "%s/%s.so", dirs[i], name);
        if (access(path, F_OK) == 0)
            return 0;
        size_t used = strlen(looked);
        snprintf(looked + used, sizeof(looked) - used, "%s%s", i ? ", " : "", dirs[i]);
    }
    snprintf(err, errlen, "plugin \"%s\" not found (looked for %s.so in %s)", name, name, looked);
    return -1;
}

/* The vtable must hold the functions its kind cannot work without. */
static int check_vtable(struct plugin *p, char *err, size_t errlen)
{
    const aero_plugin_descriptor *d = p->desc;
    if (d->kind == AERO_PLUGIN_SINK) {
        const aero_sink_vtable *vt = d->vtable;
        if (!vt || !AERO_HAS(vt, aero_sink_vtable, destroy) || !vt->create || !vt->write_batch) {
            snprintf(err, errlen, "plugin \"%s\" (%s): sink vtable lacks create or write_batch",
                     p->name, p->path);
            return -1;
        }
        p->sink = vt;
        p->keys = (struct config_keys){vt->keys, vt->n_keys, vt->key_size};
        /* 1.0 vtables end before check: their size says so. */
        p->check = AERO_HAS(vt, aero_sink_vtable, check) ? vt->check : NULL;
    } else {
        const aero_route_vtable *vt = d->vtable;
        if (!vt || !AERO_HAS(vt, aero_route_vtable, destroy) || !vt->create ||
            !vt->session_up || !vt->session_down) {
            snprintf(err, errlen,
                     "plugin \"%s\" (%s): route vtable lacks create, session_up or session_down",
                     p->name, p->path);
            return -1;
        }
        p->route = vt;
        p->keys = (struct config_keys){vt->keys, vt->n_keys, vt->key_size};
        p->check = AERO_HAS(vt, aero_route_vtable, check) ? vt->check : NULL;
    }
    if (p->keys.n_keys && (!p->keys.keys || p->keys.key_size < offsetof(aero_config_key, type) +
                                                                     sizeof(aero_key_type))) {
        snprintf(err, errlen, "plugin \"%s\" (%s): key table has an invalid key_size %zu",
                 p->name, p->path, p->keys.key_size);
        return -1;
    }
    return 0;
}

static int check_descriptor(struct plugin *p, aero_plugin_kind kind, char *err, size_t errlen)
{
    const aero_plugin_descriptor *d = p->desc;
    if (!d) {
        snprintf(err, errlen, "plugin \"%s\" (%s): %s() returned NULL", p->name, p->path,
                 AERO_PLUGIN_ENTRY_SYMBOL);
        return -1;
    }
    /* Read the major before anything else: another major may lay out the
     * rest differently, so nothing past it is trusted. */
    if (d->size < offsetof(aero_plugin_descriptor, abi_minor) || d->abi_major != AERO_ABI_MAJOR) {
        snprintf(err, errlen,
                 "plugin \"%s\" (%s) was built for plugin ABI %u.x, this relay speaks ABI %d.x "
                 "(rebuild it against aeroarc %d headers)",
                 p->name, p->path, (unsigned)d->abi_major, AERO_ABI_MAJOR, AERO_ABI_MAJOR);
        return -1;
    }
    if (!AERO_HAS(d, aero_plugin_descriptor, vtable)) {
        snprintf(err, errlen, "plugin \"%s\" (%s): descriptor too small (%u bytes)", p->name,
                 p->path, (unsigned)d->size);
        return -1;
    }
    /* The name in relay.ini finds the file; the descriptor must agree, so
     * logs, metrics and docs never call one plugin by two names. */
    if (!d->name || strcmp(d->name, p->name) != 0) {
        snprintf(err, errlen,
                 "plugin \"%s\" (%s): its descriptor is named \"%s\", not \"%s\" as its file "
                 "name says (a plugin's name must equal its file name without .so)",
                 p->name, p->path, d->name ? d->name : "(null)", p->name);
        return -1;
    }
    if (d->kind != kind) {
        snprintf(err, errlen, "plugin \"%s\" (%s) is a %s plugin, expected a %s plugin", p->name,
                 p->path, kind_name(d->kind), kind_name(kind));
        return -1;
    }
    return check_vtable(p, err, errlen);
}

/*
 * Why a file that exists would not load. libltdl says "file not found" for
 * a corrupt object or one whose libraries are missing (it tries its other
 * names after the real failure); the dynamic loader's own message says
 * which: ask it, with the same flags, and add the hint an operator needs.
 */
static void load_failure(const char *path, const char *ltdl_reason, char *out, size_t cap)
{
    dlerror(); /* clear */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    const char *reason = h ? NULL : dlerror();
    if (h)
        dlclose(h);
    if (!reason) {
        snprintf(out, cap, "%s", ltdl_reason ? ltdl_reason : "unknown error");
        return;
    }
    bool dependency = strstr(reason, "cannot open shared object file") &&
                      !strstr(reason, path);
    snprintf(out, cap, "%s%s", reason,
             dependency ? " (a library it needs is missing: see ldd on the plugin)" : "");
}

int plugin_load(const char *name, aero_plugin_kind kind, const char *configured_dir,
                struct plugin **out, char *err, size_t errlen)
{
    char path[4200];
    struct plugin *p = NULL;
    lt_dladvise advise = NULL;

    *out = NULL;
    if (!name_valid(name)) {
        snprintf(err, errlen, "invalid plugin name \"%s\" (letters, digits, '-', '_', '.')",
                 name ? name : "");
        return -1;
    }
    pthread_once(&ltdl_once, ltdl_init);
    if (ltdl_init_rc != 0) {
        snprintf(err, errlen, "cannot initialise libltdl: %s", lt_dlerror());
        return -1;
    }
    if (find_file(name, configured_dir, path, sizeof(path), err, errlen) < 0)
        return -1;

    p = calloc(1, sizeof(*p));
    if (!p || !(p->name = strdup(name)) || !(p->path = strdup(path)))
        goto oom;
    if (lt_dladvise_init(&advise) || lt_dladvise_local(&advise)) {
        snprintf(err, errlen, "plugin \"%s\": libltdl: %s", name, lt_dlerror());
        goto fail;
    }
    lt_dlhandle h = lt_dlopenadvise(path, advise);
    if (!h) {
        char why[1024];
        load_failure(path, lt_dlerror(), why, sizeof(why));
        snprintf(err, errlen, "plugin \"%s\": cannot load %s: %s", name, path, why);
        goto fail;
    }
    p->handle = h;
    void *sym = lt_dlsym(h, AERO_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        snprintf(err, errlen, "plugin \"%s\" (%s) has no %s symbol (not an aeroarc plugin?)",
                 name, path, AERO_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    const aero_plugin_descriptor *(*entry)(void);
    *(void **)&entry = sym; /* POSIX: object pointer to function pointer */
    p->desc = entry();
    if (check_descriptor(p, kind, err, errlen) < 0)
        goto fail;
    lt_dladvise_destroy(&advise);
    *out = p;
    return 0;

oom:
    snprintf(err, errlen, "plugin \"%s\": out of memory", name);
fail:
    if (advise)
        lt_dladvise_destroy(&advise);
    plugin_unload(p);
    return -1;
}

void plugin_unload(struct plugin *p)
{
    if (!p)
        return;
    if (p->handle)
        lt_dlclose((lt_dlhandle)p->handle);
    free(p->name);
    free(p->path);
    free(p);
}
