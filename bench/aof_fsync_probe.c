/* LD_PRELOAD probe for bench/aof.py: records how far the append-only file is known to be on disk.
 *
 * Wraps fsync/fdatasync. Before the real call it reads the file's size; once the call returns 0,
 * every byte below that size has reached the disk, so it writes that size to $AOF_PROBE_FILE.
 * After a crash, the AOF cut at that size is what a power loss at that instant would leave if
 * the kernel had written back nothing since the last fsync (the worst case, and the usual one
 * within a second: dirty pages wait vm.dirty_expire_centisecs, 30 s by default). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef int (*sync_fn)(int);

static void record(int fd, off_t synced) {
    const char *out = getenv("AOF_PROBE_FILE");
    char link[64], path[4096], line[32];
    if (out == NULL) return;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return;
    path[n] = '\0';
    if (strstr(path, ".aof") == NULL) return;
    int probe = open(out, O_WRONLY | O_CREAT, 0644);
    if (probe < 0) return;
    int len = snprintf(line, sizeof line, "%020lld\n", (long long)synced);
    if (pwrite(probe, line, (size_t)len, 0) != len) { /* the reader then sees an older size */ }
    close(probe);
}

static int wrapped(const char *name, int fd) {
    sync_fn real = (sync_fn)dlsym(RTLD_NEXT, name);
    struct stat st;
    int sized = fstat(fd, &st) == 0;
    int rc = real(fd);
    if (rc == 0 && sized) record(fd, st.st_size);
    return rc;
}

int fdatasync(int fd) { return wrapped("fdatasync", fd); }
int fsync(int fd) { return wrapped("fsync", fd); }
