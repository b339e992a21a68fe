/*
 * b9-mount: the mount steps of a container start that need syscalls Node cannot make
 * (open_tree, mount_setattr, move_mount, setns). One run per container start, so its cost
 * (about a millisecond) stays off the cold-start budget. The runc runtime compiles it on first
 * use (see runtime/runc/mount-helper.ts); runc 1.1 cannot idmap mounts itself.
 *
 *   b9-mount [--map HOSTID:COUNT] [--move SRC DST]... [--overlay TARGET UPPER WORK LOWER:...]
 *            [--bind SRC DST]... [--netns-sysctl NETNS_PATH]
 *
 * --map      builds a user namespace mapping 0..COUNT-1 to HOSTID.. (the one the container runs in)
 *            and idmaps every --overlay lower layer and --bind source with it, so files owned by
 *            host uid 0 appear owned by container root, and container root's writes through a
 *            bind land as uid 0 on disk.
 * --overlay  mounts overlayfs with the (idmapped) lower layers, referenced by /proc/self/fd paths
 *            of detached mounts: the idmapped clones exist only inside the overlay, nothing to clean.
 * --bind     attaches an (idmapped) clone of SRC at DST.
 * --move     moves the mount at SRC to DST (a pre-mounted writable-layer disk into the container
 *            dir) and removes SRC's now empty dir.
 * Mount points (and missing dirs above them, 0711) are created here: one process instead of a
 * dozen file-system round trips from Node on the cold-start path.
 * --netns-sysctl  lets container root bind ports below 1024 in a netns the host owns.
 * --sysfs    (after --netns-sysctl) mounts a read-only sysfs showing that netns at DST: a user
 *            namespace may not mount sysfs for a netns it does not own, and binding the host's
 *            /sys would show the host's interfaces.
 *   b9-mount --unshift DIR HOSTID:COUNT   (see unshift())
 * Exit 0, or 1 with "b9-mount: <step> <path>: <error>" on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *step, const char *path) {
  fprintf(stderr, "b9-mount: %s %s: %s\n", step, path, strerror(errno));
  exit(1);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die("write", path);
  close(fd);
}

/* A user namespace with the mapping, held by a short-lived child only until its fd is open. */
static int make_userns(const char *map) {
  int ready[2], release[2];
  if (pipe2(ready, O_CLOEXEC) || pipe2(release, O_CLOEXEC)) die("pipe", "");
  pid_t child = fork();
  if (child < 0) die("fork", "");
  if (child == 0) {
    char byte = 0;
    close(release[1]);
    close(ready[0]);
    if (unshare(CLONE_NEWUSER)) _exit(1);
    if (write(ready[1], &byte, 1) != 1) _exit(1);
    (void)!read(release[0], &byte, 1);
    _exit(0);
  }
  close(ready[1]);
  close(release[0]);
  char byte, path[64];
  if (read(ready[0], &byte, 1) != 1) { errno = EPERM; die("unshare", "CLONE_NEWUSER"); }
  snprintf(path, sizeof path, "/proc/%d/uid_map", child);
  write_file(path, map);
  snprintf(path, sizeof path, "/proc/%d/gid_map", child);
  write_file(path, map);
  snprintf(path, sizeof path, "/proc/%d/ns/user", child);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) die("open", path);
  close(release[1]);
  waitpid(child, NULL, 0);
  return ns;
}

/*
 * A detached clone of the mount at `src`, idmapped when `ns` >= 0. With `optional`, a filesystem
 * that cannot be idmapped (NFS, FUSE) is bound as it is: its files then show as nobody inside.
 */
static int clone_mount(const char *src, int ns, int optional) {
  int tree = syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE);
  if (tree < 0) die("open_tree", src);
  if (ns >= 0) {
    struct mount_attr attr = {0};
    attr.attr_set = MOUNT_ATTR_IDMAP;
    attr.userns_fd = ns;
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr)) {
      if (!optional) die("idmap", src);
      fprintf(stderr, "b9-mount: warning: %s cannot be idmapped (%s); bound unmapped\n", src, strerror(errno));
    }
  }
  return tree;
}

/* Creates the missing dirs above `path` (0711: searchable by container roots, not listable). */
static void make_parents(const char *path) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) { errno = ENAMETOOLONG; die("path", path); }
  for (char *slash = strchr(buf + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
    *slash = 0;
    if (mkdir(buf, 0711) && errno != EEXIST) die("mkdir", buf);
    *slash = '/';
  }
}

/* A mount point for `dst` like `src`: a dir for a dir, an empty file for anything else. */
static void make_mount_point(const char *dst, const char *src) {
  struct stat st;
  make_parents(dst);
  if (src && stat(src, &st)) die("stat", src);
  if (!src || S_ISDIR(st.st_mode)) {
    if (mkdir(dst, 0755) && errno != EEXIST) die("mkdir", dst);
  } else {
    int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) die("create", dst);
    close(fd);
  }
}

static void attach(int tree, const char *dst) {
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH)) die("move_mount", dst);
  close(tree);
}

static void overlay(int ns, const char *target, const char *upper, const char *work, char *lowers) {
  char options[4096];
  int used = snprintf(options, sizeof options, "upperdir=%s,workdir=%s,lowerdir=", upper, work);
  for (char *save = NULL, *lower = strtok_r(lowers, ":", &save); lower; lower = strtok_r(NULL, ":", &save)) {
    int fd = clone_mount(lower, ns, 0);
    used += snprintf(options + used, sizeof options - used, "%s/proc/self/fd/%d", options[used - 1] == '=' ? "" : ":", fd);
    if (used >= (int)sizeof options) { errno = E2BIG; die("overlay", target); }
  }
  if (mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV, options)) die("mount overlay", target);
}

static void netns_sysctl(const char *netns) {
  int fd = open(netns, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET)) die("setns", netns);
  write_file("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
}

/*
 * --unshift: an image build's kept upper dir, written through the user namespace, records the
 * shifted owners (HOSTID + n); the layer must record n. Run after the container is gone; the walk
 * never follows links nor leaves the filesystem. chown clears setuid/setgid, so the mode goes back.
 */
static unsigned long shift_base, shift_count;

static int unshift_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)type;
  (void)ftw;
  if (st->st_uid < shift_base || st->st_uid >= shift_base + shift_count) return 0;
  gid_t gid = st->st_gid >= shift_base && st->st_gid < shift_base + shift_count ? st->st_gid - shift_base : st->st_gid;
  if (lchown(path, st->st_uid - shift_base, gid)) die("lchown", path);
  if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) && chmod(path, st->st_mode & 07777)) die("chmod", path);
  return 0;
}

static void unshift(const char *dir, const char *range) {
  if (sscanf(range, "%lu:%lu", &shift_base, &shift_count) != 2 || shift_base == 0) { errno = EINVAL; die("--unshift", range); }
  if (nftw(dir, unshift_entry, 64, FTW_PHYS | FTW_MOUNT)) die("walk", dir);
}

int main(int argc, char **argv) {
  int ns = -1;
  for (int i = 1; i < argc; i++) {
    const char *flag = argv[i];
    int left = argc - i - 1;
    if (!strcmp(flag, "--map") && left >= 1) {
      char map[64];
      unsigned long host, count;
      if (sscanf(argv[++i], "%lu:%lu", &host, &count) != 2 || host == 0 || count == 0) { errno = EINVAL; die("--map", argv[i]); }
      snprintf(map, sizeof map, "0 %lu %lu\n", host, count);
      ns = make_userns(map);
    } else if (!strcmp(flag, "--move") && left >= 2) {
      make_mount_point(argv[i + 2], NULL);
      attach(clone_mount(argv[i + 1], -1, 0), argv[i + 2]);
      if (umount2(argv[i + 1], MNT_DETACH)) die("umount", argv[i + 1]);
      if (rmdir(argv[i + 1])) die("rmdir", argv[i + 1]);
      i += 2;
    } else if (!strcmp(flag, "--overlay") && left >= 4) {
      make_mount_point(argv[i + 1], NULL);
      overlay(ns, argv[i + 1], argv[i + 2], argv[i + 3], argv[i + 4]);
      i += 4;
    } else if (!strcmp(flag, "--bind") && left >= 2) {
      make_mount_point(argv[i + 2], argv[i + 1]);
      attach(clone_mount(argv[i + 1], ns, 1), argv[i + 2]);
      i += 2;
    } else if (!strcmp(flag, "--netns-sysctl") && left >= 1) {
      netns_sysctl(argv[++i]);
    } else if (!strcmp(flag, "--unshift") && left >= 2) {
      unshift(argv[i + 1], argv[i + 2]);
      i += 2;
    } else if (!strcmp(flag, "--sysfs") && left >= 1) {
      /* After --netns-sysctl: a sysfs of that netns (the container cannot mount one itself). */
      make_mount_point(argv[++i], NULL);
      if (mount("sysfs", argv[i], "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) die("mount sysfs", argv[i]);
    } else {
      errno = EINVAL;
      die("usage", flag);
    }
  }
  return 0;
}
