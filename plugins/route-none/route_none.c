/*
 * route_none.c - the route publisher that publishes nothing: for relays
 * without Redis. Same interface as route-redis; every call returns at once.
 */
#include <aeroarc/plugin.h>

#include <stdlib.h>

struct route_none {
    const aero_host *host;
};

static int none_create(const aero_host *host, void **instance)
{
    struct route_none *r = calloc(1, sizeof(*r));
    if (!r)
        return -12; /* -ENOMEM */
    r->host = host;
    host->log(host, AERO_LOG_INFO, "routing hints are not published (route-none)");
    /* The operator who sets REDIS_ADDR expects routes in Redis (SPEC
     * section 4: with the repository's relay.ini it is all it takes); an
     * installed core package's relay.ini names route-none until the
     * route-redis package is installed and chosen. */
    const char *redis = getenv("REDIS_ADDR");
    if (redis && redis[0])
        host->log(host, AERO_LOG_WARN,
                  "REDIS_ADDR is set but [route] plugin = route-none publishes nothing: "
                  "install aeroarc-plugin-route-redis and set [route] plugin = route-redis "
                  "(docs/routing.md)");
    if (AERO_HAS(host, aero_host, report_state) && host->report_state) /* ABI 1.5: /readyz */
        host->report_state(host, AERO_STATE_OK, "publishes no routes (route-none)");
    *instance = r;
    return 0;
}

static void none_session_up(void *instance, const char *drone_id, const char *session_id)
{
    (void)instance;
    (void)drone_id;
    (void)session_id;
}

static void none_session_down(void *instance, const char *drone_id, const char *session_id)
{
    (void)instance;
    (void)drone_id;
    (void)session_id;
}

static void none_destroy(void *instance) { free(instance); }

static const aero_route_vtable route_none_vtable = {
    .size = sizeof(aero_route_vtable),
    .keys = NULL,
    .n_keys = 0,
    .key_size = sizeof(aero_config_key),
    .create = none_create,
    .session_up = none_session_up,
    .session_down = none_session_down,
    .destroy = none_destroy,
};

static const aero_plugin_descriptor route_none_descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_ROUTE),
    .name = "route-none",
    .description = "publishes no routing hints",
    .vtable = &route_none_vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    return &route_none_descriptor;
}
