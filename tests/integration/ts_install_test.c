/*
 * Integration: `cmake --install` into a scratch prefix, then use what it
 * put there the way an outside project would:
 *
 *   - the files are where README.md says (binaries, library, headers,
 *     pkg-config and CMake package files, config, unit, man pages);
 *   - libthreadsync.so exports only the public API (nm -D);
 *   - the installed threadsyncd runs from the installed config (ports and
 *     data directory given as flags, which win);
 *   - a tiny C program built with `pkg-config --cflags --libs threadsync`
 *     (shared), against libthreadsync.a (static), and through
 *     find_package(threadsync) in a CMake project, each posts to it, after
 *     checking that ts_version() of the library it runs with is the
 *     THREADSYNC_VERSION_STRING of the installed header it was built with.
 *
 * The build's sanitizer flags (TS_SAN_FLAGS) are passed to the tiny
 * program's compiler too: an instrumented library needs an instrumented
 * program.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ts_check_main.h"
#include "ts_err.h"
#include "ts_testnode.h"

static char prefix[200], work[256], libdir[400], pcdir[512], addr[64];
static pid_t node_pid;

static const char prog_c[] =
    "#include <threadsync.h>\n"
    "#include <stdio.h>\n"
    "#include <string.h>\n"
    "int main(int argc, char **argv)\n"
    "{\n"
    "    if (argc != 4)\n"
    "        return 2;\n"
    "    char token[256] = \"\";\n"
    "    FILE *f = fopen(argv[3], \"r\");\n"
    "    if (!f || !fgets(token, sizeof(token), f))\n"
    "        return 2;\n"
    "    fclose(f);\n"
    "    token[strcspn(token, \"\\r\\n\")] = '\\0';\n"
    "    const char *servers[] = {argv[1]};\n"
    "    if (strcmp(ts_version(), THREADSYNC_VERSION_STRING) != 0)\n"
    "        return 3;\n"
    "    printf(\"version=%s\\n\", ts_version());\n"
    "    struct ts_client_config cfg = TS_CLIENT_CONFIG_INIT;\n"
    "    cfg.servers = servers;\n"
    "    cfg.n_servers = 1;\n"
    "    cfg.ca_file = argv[2];\n"
    "    cfg.token = token;\n"
    "    cfg.client_name = \"install-test\";\n"
    "    Threadsync__Post p = THREADSYNC__POST__INIT;\n"
    "    p.thread_key = \"install/test\";\n"
    "    p.author_name = \"Ann\";\n"
    "    p.body = \"linked against the installed libthreadsync\";\n"
    "    Threadsync__PostResult *res;\n"
    "    Threadsync__Error *err;\n"
    "    int rc = ts_sync_post(&cfg, &p, &res, &err);\n"
    "    if (rc != TS_OK) {\n"
    "        fprintf(stderr, \"post: %s\\n\", ts_err_name(rc));\n"
    "        ts_msg_free(err);\n"
    "        return 1;\n"
    "    }\n"
    "    printf(\"id=%llu seq=%llu\\n\", (unsigned long long)res->comment_id,\n"
    "           (unsigned long long)res->seq);\n"
    "    ts_msg_free(res);\n"
    "    return 0;\n"
    "}\n";

static const char consumer_cmake[] = "cmake_minimum_required(VERSION 3.22)\n"
                                     "project(tsconsumer C)\n"
                                     "find_package(threadsync 0.1 REQUIRED)\n"
                                     "add_executable(prog prog.c)\n"
                                     "target_link_libraries(prog PRIVATE threadsync::threadsync)\n";

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* Runs a shell command in work; returns its exit code, *out its stdout. */
static int sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(char **out, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return ts_test_run(argv, work, NULL, out);
}

static void exists(const char *rel)
{
    char p[1024];
    int n = snprintf(p, sizeof(p), "%s/%s", prefix, rel);
    ck_assert(n > 0 && (size_t)n < sizeof(p));
    ck_assert_msg(access(p, F_OK) == 0, "not installed: %s", rel);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *base = getenv("TS_TEST_TMPDIR");
    snprintf(prefix, sizeof(prefix), "%s/tsinstall.XXXXXX", base ? base : "/var/tmp");
    ck_assert_ptr_nonnull(mkdtemp(prefix));
    snprintf(work, sizeof(work), "%s/work", prefix);
    ck_assert_int_eq(mkdir(work, 0700), 0);
    snprintf(libdir, sizeof(libdir), "%s/%s", prefix, TS_INSTALL_LIBDIR);
    snprintf(pcdir, sizeof(pcdir), "%s/pkgconfig", libdir);
}

static void teardown(void)
{
    if (node_pid > 0) {
        kill(node_pid, SIGTERM);
        int status;
        waitpid(node_pid, &status, 0);
        node_pid = 0;
    }
    ts_test_rmtree(prefix);
}

/* The installed threadsyncd, from the installed config; flags give the
 * scratch ports and data directory. */
static void start_installed_node(void)
{
    char conf[512], sbin[512], data[512], addr_file[512], raft[64], metrics[64];
    snprintf(conf, sizeof(conf), "%s/%s/threadsync/threadsyncd.conf", prefix,
             TS_INSTALL_SYSCONFDIR);
    snprintf(sbin, sizeof(sbin), "%s/%s/threadsyncd", prefix, TS_INSTALL_SBINDIR);
    snprintf(data, sizeof(data), "%s/data", work);
    snprintf(addr_file, sizeof(addr_file), "%s/addr", work);
    snprintf(raft, sizeof(raft), "127.0.0.1:%u", ts_test_free_port());
    snprintf(metrics, sizeof(metrics), "127.0.0.1:%u", ts_test_free_port());
    pid_t parent = getpid();
    node_pid = fork();
    ck_assert_int_ge(node_pid, 0);
    if (node_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || chdir(work) != 0)
            _exit(127);
        execl(sbin, sbin, "--config", conf, "--data-dir", data, "--listen", "127.0.0.1:0",
              "--raft-listen", raft, "--metrics-listen", metrics, "--addr-file", addr_file,
              "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    int rc = ts_test_await_line(node_pid, addr_file, addr, sizeof(addr), ts_test_now_ms() + 20000,
                                &status);
    ck_assert_msg(rc != TS_E_IO, "installed node exited: %d", status);
    ck_assert_msg(rc == TS_OK, "the installed node did not listen");
}

static uint64_t run_prog(const char *exe)
{
    char *out = NULL;
    int rc = sh(&out, "LD_LIBRARY_PATH='%s' '%s' '%s' '%s/data/ca.pem' '%s/data/admin.token'",
                libdir, exe, addr, work, work);
    ck_assert_msg(rc == 0, "%s exited %d: %s", exe, rc, out ? out : "");
    /* the library the program runs with is the version it was built for */
    ck_assert_msg(strstr(out, "version=" TS_VERSION "\n") != NULL, "%s", out);
    const char *id = strstr(out, "id=");
    ck_assert_ptr_nonnull(id);
    uint64_t v = strtoull(id + 3, NULL, 10);
    free(out);
    ck_assert_uint_gt(v, 0);
    return v;
}

START_TEST(test_install_and_link)
{
    char *out = NULL;
    ck_assert_int_eq(sh(&out, "'%s' --install '%s' --prefix '%s' >/dev/null", TS_CMAKE_COMMAND,
                        TS_BUILD_DIR, prefix),
                     0);
    free(out);

    char rel[1024];
    const char *files[] = {"libthreadsync.so",
                           TS_SONAME, /* libthreadsync.so.N, N from libthreadsync.abi */
                           "libthreadsync.a",
                           "pkgconfig/threadsync.pc",
                           "cmake/threadsync/threadsyncConfig.cmake",
                           "cmake/threadsync/threadsyncConfigVersion.cmake",
                           "cmake/threadsync/threadsyncTargets.cmake"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(rel, sizeof(rel), "%s/%s", TS_INSTALL_LIBDIR, files[i]);
        exists(rel);
    }
    const char *inc[] = {"threadsync.h", "threadsync.pb-c.h", "ts_err.h", "ts_version.h"};
    for (size_t i = 0; i < sizeof(inc) / sizeof(inc[0]); i++) {
        snprintf(rel, sizeof(rel), "%s/threadsync/%s", TS_INSTALL_INCLUDEDIR, inc[i]);
        exists(rel);
    }
    snprintf(rel, sizeof(rel), "%s/threadsyncd", TS_INSTALL_SBINDIR);
    exists(rel);
    snprintf(rel, sizeof(rel), "%s/threadsync/threadsyncd.conf", TS_INSTALL_SYSCONFDIR);
    exists(rel);

    /* only the public API is exported */
    ck_assert_int_eq(
        sh(&out, "nm -D --defined-only '%s/libthreadsync.so' | awk '{print $3}'", libdir), 0);
    int n_sym = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char *at = strchr(line, '@');
        if (at)
            *at = '\0';
        if (!strcmp(line, "THREADSYNC_0"))
            continue;
        int ok =
            !strncmp(line, "ts_client_", 10) || !strncmp(line, "ts_sync_", 8) ||
            !strcmp(line, "ts_msg_free") || !strcmp(line, "ts_version") ||
            !strncmp(line, "ts_err_", 7) ||
            (!strncmp(line, "threadsync__", 12) && strncmp(line, "threadsync__state__", 19) != 0);
        ck_assert_msg(ok, "exported: %s", line);
        n_sym++;
    }
    free(out);
    ck_assert_int_gt(n_sym, 20);

    start_installed_node();
    snprintf(rel, sizeof(rel), "%s/prog.c", work);
    write_text(rel, prog_c);

    /* shared, through pkg-config */
    ck_assert_int_eq(sh(&out,
                        "PKG_CONFIG_PATH='%s' '%s' %s -o prog prog.c "
                        "$(PKG_CONFIG_PATH='%s' pkg-config --cflags --libs threadsync) 2>&1",
                        pcdir, TS_C_COMPILER, TS_SAN_FLAGS, pcdir),
                     0);
    free(out);
    ck_assert_int_eq(sh(&out, "LD_LIBRARY_PATH='%s' ldd ./prog", libdir), 0);
    char want[600];
    snprintf(want, sizeof(want), "%s/%s", libdir, TS_SONAME);
    ck_assert_msg(strstr(out, want), "prog does not use the installed library: %s", out);
    free(out);
    uint64_t a = run_prog("./prog");

    /* static: the archive holds everything of ours it needs */
    ck_assert_int_eq(
        sh(&out,
           "'%s' %s -o prog_static prog.c "
           "$(PKG_CONFIG_PATH='%s' pkg-config --cflags threadsync) '%s/libthreadsync.a' "
           "$(pkg-config --libs --static libuv libprotobuf-c openssl) 2>&1",
           TS_C_COMPILER, TS_SAN_FLAGS, pcdir, libdir),
        0);
    free(out);
    ck_assert_int_eq(sh(&out, "ldd ./prog_static"), 0);
    ck_assert_ptr_null(strstr(out, "libthreadsync"));
    free(out);
    uint64_t b = run_prog("./prog_static");
    ck_assert_uint_gt(b, a);

    /* find_package(threadsync) */
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/consumer", work);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(rel, sizeof(rel), "%s/CMakeLists.txt", dir);
    write_text(rel, consumer_cmake);
    snprintf(rel, sizeof(rel), "%s/prog.c", dir);
    write_text(rel, prog_c);
    ck_assert_int_eq(sh(&out,
                        "'%s' -S consumer -B consumer/build -DCMAKE_PREFIX_PATH='%s' "
                        "-DCMAKE_C_COMPILER='%s' -DCMAKE_C_FLAGS='%s' "
                        "-DCMAKE_EXE_LINKER_FLAGS='%s' >/dev/null 2>&1 && "
                        "'%s' --build consumer/build >/dev/null 2>&1",
                        TS_CMAKE_COMMAND, prefix, TS_C_COMPILER, TS_SAN_FLAGS, TS_SAN_FLAGS,
                        TS_CMAKE_COMMAND),
                     0);
    free(out);
    uint64_t c = run_prog("./consumer/build/prog");
    ck_assert_uint_gt(c, b);

    ck_assert_int_eq(kill(node_pid, SIGTERM), 0);
    int status;
    ck_assert_int_eq(waitpid(node_pid, &status, 0), node_pid);
    node_pid = 0;
    ck_assert_msg(status == 0, "installed node exit status %d", status);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("install");
    TCase *tc = tcase_create("install");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_install_and_link);
    suite_add_tcase(s, tc);
    return ts_check_run(s);
}
