/*
 * fuzz_config.c - libFuzzer target for relay.ini handling (core/config.c
 * and core/settings.c): parse the input as a file, then build the core
 * settings and validate every [sink:*] and [route] section with the core
 * keys alone. Whatever the bytes, nothing crashes or leaks, errors are
 * lines each naming the file (the last may say the list was cut), and
 * accepted settings are in range.
 */
#include "config.h"
#include "settings.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void check_error(const char *err)
{
    static const char cut[] = "... (more errors: this list is cut)";
    check(err[0] != '\0');
    for (const char *line = err; line;) {
        const char *nl = strchr(line, '\n');
        check(strncmp(line, "fuzz.ini", 8) == 0 || (!nl && strcmp(line, cut) == 0));
        line = nl ? nl + 1 : NULL;
    }
}

static void check_settings(const struct settings *s)
{
    check(s->listen && s->relay_id && s->relay_id[0] && s->plugin_dir && s->http_listen);
    check(s->route_plugin && s->route_section && s->auth_mode && s->auth_keys_file);
    check(s->max_inflight >= 1 && s->max_inflight <= 100000);
    check(s->workers >= 1 && s->max_message_bytes >= 1024);
    check(s->max_sessions >= 1 && s->max_streams_per_connection >= 1);
    check(s->keepalive_time_s >= 0 && s->keepalive_timeout_s >= 1);
    check(s->handshake_timeout_s >= 1 && s->shutdown_grace_s >= 0);
    for (size_t i = 0; i < s->n_sinks; i++)
        check(s->sinks[i].name && s->sinks[i].plugin && s->sinks[i].queue >= 1 &&
              s->sinks[i].section);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    char err[CONFIG_ERR_LEN * 2] = "";
    struct config_file f;
    struct settings s;

    check(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0'; /* embedded NULs end the text early: fine */

    if (config_parse_string("fuzz.ini", text, &f, err, sizeof(err)) == 0)
        config_free(&f);
    else
        check_error(err);

    err[0] = '\0';
    if (settings_load_string("fuzz.ini", text, &s, err, sizeof(err)) == 0) {
        check_settings(&s);
        /* Plugin keys are the plugin's: validate with the core's alone. */
        for (size_t i = 0; i < s.n_sinks; i++) {
            err[0] = '\0';
            if (settings_validate_plugin_section(&s, s.sinks[i].section, NULL, err,
                                                 sizeof(err)) < 0)
                check_error(err);
        }
        err[0] = '\0';
        if (settings_validate_plugin_section(&s, s.route_section, NULL, err, sizeof(err)) < 0)
            check_error(err);
        settings_free(&s);
    } else {
        check_error(err);
    }
    free(text);
    return 0;
}
