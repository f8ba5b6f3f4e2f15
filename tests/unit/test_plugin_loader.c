/*
 * test_plugin_loader.c - the loader accepts real plugins and refuses each
 * kind of wrong one with a message naming the plugin and the reason.
 */
#include "plugin_loader.h"

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char err[1024];

Test(plugin_loader, loads_the_built_in_plugins)
{
    struct plugin *p = NULL;
    cr_assert_eq(plugin_load("sink-file", AERO_PLUGIN_SINK, AERO_PLUGIN_BUILD_DIR, &p, err,
                             sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(p->desc->name, "sink-file");
    cr_assert_not_null(p->sink);
    cr_assert_null(p->route);
    cr_assert_gt(p->keys.n_keys, 0);
    plugin_unload(p);

    cr_assert_eq(plugin_load("route-none", AERO_PLUGIN_ROUTE, AERO_PLUGIN_BUILD_DIR, &p, err,
                             sizeof(err)), 0, "%s", err);
    cr_assert_not_null(p->route);
    plugin_unload(p);
}

Test(plugin_loader, refuses_another_abi_major)
{
    struct plugin *p = (struct plugin *)1;
    cr_assert_eq(plugin_load("test-bad-abi", AERO_PLUGIN_SINK, AERO_TEST_PLUGIN_DIR, &p, err,
                             sizeof(err)), -1);
    cr_assert_null(p);
    char want[512];
    snprintf(want, sizeof(want),
             "plugin \"test-bad-abi\" (%s/test-bad-abi.so) was built for plugin ABI 2.x, this "
             "relay speaks ABI 1.x (rebuild it against aeroarc 1 headers)",
             AERO_TEST_PLUGIN_DIR);
    cr_assert_str_eq(err, want);
}

Test(plugin_loader, refuses_a_shared_object_without_entry)
{
    struct plugin *p = NULL;
    cr_assert_eq(plugin_load("test-no-entry", AERO_PLUGIN_SINK, AERO_TEST_PLUGIN_DIR, &p, err,
                             sizeof(err)), -1);
    char want[512];
    snprintf(want, sizeof(want),
             "plugin \"test-no-entry\" (%s/test-no-entry.so) has no aeroarc_plugin_entry symbol "
             "(not an aeroarc plugin?)",
             AERO_TEST_PLUGIN_DIR);
    cr_assert_str_eq(err, want);
}

Test(plugin_loader, refuses_a_missing_plugin_and_says_where_it_looked)
{
    struct plugin *p = NULL;
    cr_assert_eq(plugin_load("sink-nowhere", AERO_PLUGIN_SINK, "/nonexistent/dir", &p, err,
                             sizeof(err)), -1);
    cr_assert_str_eq(err, "plugin \"sink-nowhere\" not found (looked for sink-nowhere.so in "
                          "/nonexistent/dir)");
}

Test(plugin_loader, refuses_the_wrong_kind)
{
    struct plugin *p = NULL;
    cr_assert_eq(plugin_load("route-none", AERO_PLUGIN_SINK, AERO_PLUGIN_BUILD_DIR, &p, err,
                             sizeof(err)), -1);
    cr_assert(strstr(err, "is a route plugin, expected a sink plugin"), "%s", err);
}

Test(plugin_loader, refuses_names_that_could_leave_the_directory)
{
    struct plugin *p = NULL;
    cr_assert_eq(plugin_load("../etc/passwd", AERO_PLUGIN_SINK, AERO_PLUGIN_BUILD_DIR, &p, err,
                             sizeof(err)), -1);
    cr_assert(strstr(err, "invalid plugin name"), "%s", err);
}

Test(plugin_loader, loads_an_older_minor_with_a_shorter_key_stride)
{
    struct plugin *p = NULL;
    cr_assert_eq(plugin_load("test-old-minor", AERO_PLUGIN_SINK, AERO_TEST_PLUGIN_DIR, &p, err,
                             sizeof(err)), 0, "%s", err);
    cr_assert_lt(p->keys.key_size, sizeof(aero_config_key));
    cr_assert_eq(p->keys.n_keys, 1);
    cr_assert_str_eq(p->keys.keys->name, "greeting");
    /* A 1.0 vtable ends before the check slot: none is read past its size. */
    cr_assert_eq(p->desc->abi_minor, 0);
    cr_assert_lt(p->sink->size, offsetof(aero_sink_vtable, check) + sizeof(p->sink->check));
    cr_assert_null(p->check);
    plugin_unload(p);
}

Test(plugin_loader, takes_the_check_slot_of_a_1_1_plugin)
{
    struct plugin *p = NULL;
    cr_assert_eq(plugin_load("sink-file", AERO_PLUGIN_SINK, AERO_PLUGIN_BUILD_DIR, &p, err,
                             sizeof(err)), 0, "%s", err);
    cr_assert_geq(p->desc->abi_minor, 1);
    cr_assert_not_null(p->check);
    cr_assert_eq((void *)p->check, (void *)p->sink->check);
    plugin_unload(p);
    /* route-none has nothing to check: an absent slot stays absent */
    cr_assert_eq(plugin_load("route-none", AERO_PLUGIN_ROUTE, AERO_PLUGIN_BUILD_DIR, &p, err,
                             sizeof(err)), 0, "%s", err);
    cr_assert_null(p->check);
    plugin_unload(p);
}

Test(plugin_loader, refuses_a_descriptor_named_other_than_its_file)
{
    struct plugin *p = (struct plugin *)1;
    cr_assert_eq(plugin_load("test-wrong-name", AERO_PLUGIN_SINK, AERO_TEST_PLUGIN_DIR, &p, err,
                             sizeof(err)), -1);
    cr_assert_null(p);
    char want[512];
    snprintf(want, sizeof(want),
             "plugin \"test-wrong-name\" (%s/test-wrong-name.so): its descriptor is named "
             "\"test-other-name\", not \"test-wrong-name\" as its file name says (a plugin's "
             "name must equal its file name without .so)",
             AERO_TEST_PLUGIN_DIR);
    cr_assert_str_eq(err, want);
}

Test(plugin_loader, every_in_tree_and_test_plugin_is_named_as_its_file)
{
    static const struct {
        const char *name, *dir;
        aero_plugin_kind kind;
    } all[] = {
        {"sink-file", AERO_PLUGIN_BUILD_DIR, AERO_PLUGIN_SINK},
        {"sink-stdout", AERO_PLUGIN_BUILD_DIR, AERO_PLUGIN_SINK},
        {"sink-mqtt", AERO_PLUGIN_BUILD_DIR, AERO_PLUGIN_SINK},
        {"sink-nats", AERO_PLUGIN_BUILD_DIR, AERO_PLUGIN_SINK},
        {"sink-influxdb", AERO_PLUGIN_BUILD_DIR, AERO_PLUGIN_SINK},
        {"route-none", AERO_PLUGIN_BUILD_DIR, AERO_PLUGIN_ROUTE},
        {"route-redis", AERO_PLUGIN_BUILD_DIR, AERO_PLUGIN_ROUTE},
        {"test-old-minor", AERO_TEST_PLUGIN_DIR, AERO_PLUGIN_SINK},
        {"test-new-minor", AERO_TEST_PLUGIN_DIR, AERO_PLUGIN_SINK},
        {"test-sink-control", AERO_TEST_PLUGIN_DIR, AERO_PLUGIN_SINK},
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        struct plugin *p = NULL;
        cr_expect_eq(plugin_load(all[i].name, all[i].kind, all[i].dir, &p, err, sizeof(err)), 0,
                     "%s: %s", all[i].name, err);
        plugin_unload(p);
    }
}

Test(plugin_loader, loads_a_newer_minor_with_larger_structs)
{
    struct plugin *p = NULL;
    cr_assert_eq(plugin_load("test-new-minor", AERO_PLUGIN_SINK, AERO_TEST_PLUGIN_DIR, &p, err,
                             sizeof(err)), 0, "%s", err);
    cr_assert_gt(p->desc->size, sizeof(aero_plugin_descriptor));
    cr_assert_eq(p->desc->abi_minor, AERO_ABI_MINOR + 1);
    plugin_unload(p);
}

Test(plugin_loader, default_search_prefers_the_build_tree_then_the_install_dir)
{
    char dirs[4][4096];
    size_t n = plugin_search_dirs("", dirs, 4);
    cr_assert_geq(n, 1);
    cr_assert_str_eq(dirs[n - 1], AERO_PLUGIN_INSTALL_DIR);
    n = plugin_search_dirs("/opt/x", dirs, 4);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(dirs[0], "/opt/x");
}

/* A plugin whose own library cannot be found: the loader names that
 * library and says what to do, where libltdl says "file not found". */
Test(plugin_loader, a_missing_library_is_named_with_the_hint)
{
    struct plugin *p = NULL;
    cr_assert_eq(plugin_load("test-needs-lib", AERO_PLUGIN_SINK, AERO_TEST_PLUGIN_DIR, &p, err,
                             sizeof(err)),
                 -1);
    cr_expect(strstr(err, "cannot load") && strstr(err, "/test-needs-lib.so"), "%s", err);
    cr_expect_not_null(strstr(err, "libaero-test-gone.so: cannot open shared object file"),
                       "%s", err);
    cr_expect_not_null(strstr(err, "(a library it needs is missing: see ldd on the plugin)"),
                       "%s", err);
    cr_expect_null(strstr(err, "file not found"), "libltdl's stand-in reason: %s", err);
}

/* libltdl says "file not found" for a file that is there but is no shared
 * object; the loader gives the dynamic loader's real reason. */
Test(plugin_loader, a_corrupt_shared_object_gets_the_real_reason)
{
    char dir[] = "/tmp/aero-plugin-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/sink-corrupt.so", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("this is not an ELF file, it only looks like a plugin by its name\n", f);
    fclose(f);
    struct plugin *p = NULL;
    cr_assert_eq(plugin_load("sink-corrupt", AERO_PLUGIN_SINK, dir, &p, err, sizeof(err)), -1);
    cr_expect(strstr(err, "cannot load") && strstr(err, path), "%s", err);
    cr_expect_null(strstr(err, "file not found"), "libltdl's stand-in reason: %s", err);
    cr_expect(strstr(err, "invalid ELF header") || strstr(err, "file too short"), "%s", err);
    unlink(path);
    rmdir(dir);
}
