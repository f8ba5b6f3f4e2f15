/*
 * plugin_sections.c - load, validate and check one plugin section
 * (plugin_sections.h). Everything here runs before an instance exists:
 * the plugin's create() is sink_pipeline's or route's to call.
 */
#include "plugin_sections.h"

#include "plugin_loader.h"

#include <stdio.h>

int plugin_sections_load(struct settings *st, struct config_section *sec, const char *name,
                         aero_plugin_kind kind, struct plugin **out, char *err, size_t errlen)
{
    char reason[1024];
    if (plugin_load(name, kind, st->plugin_dir, out, reason, sizeof(reason)) < 0) {
        const struct config_kv *kv = config_get_kv(sec, "plugin");
        return config_errorf(err, errlen, st->file.path, kv ? kv->line : sec->line, sec->name,
                             "plugin", "%s", reason);
    }
    return settings_validate_plugin_section(st, sec, &(*out)->keys, err, errlen);
}

int plugin_sections_check(struct settings *st, const struct plugin *p,
                          const struct config_section *sec, const char *kind_label,
                          const char *instance, host_config_report_fn report, void *arg)
{
    if (!p->check)
        return 0;
    struct host_instance *h = host_instance_create(kind_label, instance, sec, st->relay_id, NULL);
    if (!h) {
        report(arg, "out of memory");
        return -1;
    }
    host_instance_set_config_report(h, report, arg);
    struct host_relay relay = {.listen = st->listen}; /* no port, sessions or /readyz yet */
    host_instance_set_relay(h, &relay);
    int rc = p->check(host_instance_api(h));
    unsigned reported = host_instance_config_errors(h);
    host_instance_destroy(h);
    if (rc != 0 && reported == 0) {
        char line[CONFIG_ERR_LEN];
        config_errorf(line, sizeof(line), st->file.path, sec->line, sec->name, NULL,
                      "plugin \"%s\" refused this section (check returned %d) without saying why",
                      p->name, rc);
        report(arg, line);
    }
    return rc != 0 || reported > 0 ? -1 : 0;
}

int plugin_sections_prepare(struct settings *st, struct config_section *sec, const char *name,
                            aero_plugin_kind kind, const char *instance, struct plugin **out,
                            host_config_report_fn report, void *arg)
{
    char err[8192];
    if (plugin_sections_load(st, sec, name, kind, out, err, sizeof(err)) < 0) {
        report(arg, err);
        return -1;
    }
    return plugin_sections_check(st, *out, sec, kind == AERO_PLUGIN_SINK ? "sink" : "route",
                                 instance, report, arg);
}

/* A plugin's check errors, appended for the one log line. */
struct appender {
    char *err;
    size_t len;
};

static void append(void *arg, const char *lines)
{
    struct appender *a = arg;
    config_error_add(a->err, a->len, lines);
}

int plugin_sections_stage_load(struct settings *st, struct config_section *sec, const char *name,
                               aero_plugin_kind kind, struct plugin **out, char *err,
                               size_t errlen)
{
    char one[8192];
    if (plugin_sections_load(st, sec, name, kind, out, one, sizeof(one)) < 0) {
        config_error_add(err, errlen, one);
        return -1;
    }
    return 0;
}

int plugin_sections_stage_check(struct settings *st, const struct plugin *p,
                                const struct config_section *sec, const char *kind_label,
                                const char *instance, char *err, size_t errlen)
{
    struct appender a = {err, errlen};
    return plugin_sections_check(st, p, sec, kind_label, instance, append, &a);
}
