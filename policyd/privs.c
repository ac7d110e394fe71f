// SPDX-License-Identifier: GPL-2.0-only
/*
 * Privileges. Everything that needs root happens before this: loading,
 * attaching, pinning, adopting open connections (pidfd_getfd), opening
 * syslog and the sinks. Then policyd splits in two, after the model of
 * privilege-separated daemons:
 *
 *  - the daemon drops to `user` with setgroups(0), setresgid, setresuid,
 *    and keeps NO capability. What it still does needs none on the kernels
 *    policyd supports: it updates maps through descriptors it already holds
 *    (bpf() checks CAP_BPF for creating maps and loading programs only, in
 *    6.1 already; map operations check the descriptor's mode), consumes
 *    the ring buffer through its mapping, reads its sink sockets and
 *    writes its open sink files. no_new_privs is set, and regaining uid or gid 0 must fail.
 *
 *  - a reaper keeps uid 0 but no capability either, holds no BPF object, and
 *    waits on a pipe. When the daemon says so, or dies (even by SIGKILL), it
 *    removes the pins; with the daemon's descriptors closed that frees the
 *    maps and detaches the programs. Owning the pins as uid 0 is all it
 *    needs: the pin directory is root's.
 *
 *  - an aborter runs as `user` too, with no_new_privs, holds no BPF object,
 *    and keeps one capability, CAP_NET_ADMIN, and nothing else in its
 *    bounding set: it ends the connections the daemon names over a
 *    socket pair (abort.c), and ends with the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "daemon.h"

/* What the daemon logs (after its stop) or the reaper writes to stderr
 * (after the daemon died) when a pin or the pin directory stays. */
#define UNPIN_FAILED "cannot remove everything in %s: %s (a pin left there keeps policyd " \
	"attached: remove the directory by hand)"

/* Remove every pin in dir, then dir. Returns 0, or the errno of the
 * first removal that failed (a directory already gone is not one). */
static int unpin_all(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int fd, err = 0;

	if (!d)
		return errno == ENOENT ? 0 : errno;
	fd = dirfd(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && unlinkat(fd, de->d_name, 0) && !err)
			err = errno;
	closedir(d);
	if (rmdir(dir) && !err)
		err = errno;
	return err;
}

static int no_caps(void)
{
	cap_t none = cap_init();
	int err;

	if (!none)
		return -1;
	err = cap_set_proc(none);
	cap_free(none);
	return err;
}

/* The reaper: reads 'D' (detach) or 'K' (keep), or EOF (the daemon died:
 * what on_exit says; 'd' and 'k' change that after a reload), acts,
 * answers on done (a byte: 0, or the errno of a pin it could not remove,
 * which the daemon logs; with the daemon dead it says so on stderr
 * itself), exits. It shares the daemon's lock on the pin directory, so
 * no new instance takes the pins over before it is done with them. */
static void reaper(int cmd, int done, const char *pin_dir, bool keep)
{
	unsigned char r;
	int err = 0;
	char c;
	ssize_t n;

	prctl(PR_SET_NAME, "policyd-reaper");
	if (no_caps() || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		_exit(1);
	for (;;) {
		n = read(cmd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 1 && (c == 'd' || c == 'k')) {
			keep = c == 'k';
			continue;
		}
		break;
	}
	if (n <= 0)
		c = keep ? 'K' : 'D';
	if (c == 'D')
		err = unpin_all(pin_dir);
	if (err && n <= 0)
		fprintf(stderr, "policyd: the daemon ended; " UNPIN_FAILED "\n", pin_dir,
			strerror(err));
	r = (unsigned char)err;     /* Linux's errno values fit a byte */
	if (write(done, &r, 1) < 0)
		_exit(1);
	_exit(err ? 1 : 0);
}

static void close_all_but(int a, int b, int c)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int self;

	if (!d)
		return;
	self = dirfd(d);
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);

		if (de->d_name[0] != '.' && fd > 2 && fd != a && fd != b && fd != c &&
		    fd != self)
			close(fd);
	}
	closedir(d);
}

/* Whether the process's ids are all pw's, and root cannot be regained. */
static bool ids_are(const struct passwd *pw)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (getresuid(&ru, &eu, &su) || getresgid(&rg, &eg, &sg) ||
	    ru != pw->pw_uid || eu != pw->pw_uid || su != pw->pw_uid ||
	    rg != pw->pw_gid || eg != pw->pw_gid || sg != pw->pw_gid)
		return false;
	return setuid(0) == -1 && setgid(0) == -1 && seteuid(0) == -1;
}

/* The aborter's privileges: pw's ids, no_new_privs, and CAP_NET_ADMIN
 * alone, permitted and effective. Returns 0, or -1 with errno. */
static int aborter_privileges(const struct passwd *pw)
{
	/* SOCK_DESTROY through sock_diag (what `ss -K` does) checks it, in
	 * the network namespace of the socket it ends */
	cap_value_t keep = CAP_NET_ADMIN;
	cap_t caps;
	int err;

	/* out of the bounding set too, where it may (that takes CAP_SETPCAP:
	 * a service manager's bounding set without it limits the set
	 * already, and no_new_privs below keeps an exec from gaining any) */
	for (int c = 0; c < 64; c++) {
		if (c == CAP_NET_ADMIN || prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == 0)
			continue;
		if (errno == EPERM)
			break;
		return -1;
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) || setgroups(0, NULL) ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid))
		return -1;
	caps = cap_init();
	if (!caps)
		return -1;
	err = cap_set_flag(caps, CAP_PERMITTED, 1, &keep, CAP_SET) ||
	      cap_set_flag(caps, CAP_EFFECTIVE, 1, &keep, CAP_SET) || cap_set_proc(caps);
	cap_free(caps);
	if (err || prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) ||
	    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	if (!ids_are(pw)) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

/* Start the aborter, a child that drops to pw with CAP_NET_ADMIN and
 * serves the daemon's end of a socket pair (d->abort_fd), then wait for
 * it to say whether it can abort on this kernel (pd_abort_ready). */
static int aborter_start(struct pd_daemon *d, const struct passwd *pw)
{
	int sv[2], null;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		perror("policyd: socketpair");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		perror("policyd: fork");
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		close_all_but(sv[1], -1, -1);
		null = open("/dev/null", O_RDWR);
		if (null >= 0 && (dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0))
			_exit(1);
		prctl(PR_SET_NAME, "policyd-abort");
		pd_aborter(sv[1], aborter_privileges(pw) ? errno : 0);
	}
	close(sv[1]);
	d->aborter = pid;
	d->abort_fd = sv[0];
	return pd_abort_ready(d);
}

int pd_drop_privileges(struct pd_daemon *d, const char *user, bool keep)
{
	struct passwd *pw = getpwnam(user);
	int cmd[2], done[2];
	pid_t pid;

	if (!pw) {
		fprintf(stderr, "policyd: no user \"%s\" to run as (see daemon.user, --user)\n",
			user);
		return -1;
	}
	if (!pw->pw_uid || !pw->pw_gid) {
		fprintf(stderr, "policyd: user \"%s\" has uid or gid 0; policyd runs as an "
			"unprivileged account (nobody by default)\n", user);
		return -1;
	}
	if (aborter_start(d, pw))
		return -1;
	if (pipe2(cmd, O_CLOEXEC) || pipe2(done, O_CLOEXEC)) {
		perror("policyd: pipe");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		perror("policyd: fork");
		return -1;
	}
	if (pid == 0) {
		close(cmd[1]);
		close(done[0]);
		close_all_but(cmd[0], done[1], d->lock_fd);
		reaper(cmd[0], done[1], d->pin_dir, keep);
	}
	close(cmd[0]);
	close(done[1]);
	d->reaper = pid;
	d->reaper_cmd = cmd[1];
	d->reaper_done = done[0];

	if (setgroups(0, NULL)) {
		perror("policyd: setgroups");
		return -1;
	}
	if (setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid)) {
		perror("policyd: setresgid");
		return -1;
	}
	if (setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid)) {
		perror("policyd: setresuid");
		return -1;
	}
	/* setresuid away from 0 cleared the permitted and effective sets;
	 * clear the inheritable and ambient ones too */
	if (no_caps() || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)) {
		perror("policyd: clearing capabilities");
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		perror("policyd: no_new_privs");
		return -1;
	}
	if (!ids_are(pw)) {
		fprintf(stderr, "policyd: the ids did not change as asked, or root could be "
			"regained after dropping privileges\n");
		return -1;
	}
	pd_log(d, LOG_NOTICE, "running as %s (uid %u, gid %u), no capabilities", user,
	       (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	return 0;
}

/* A reload changed on_exit: what the reaper does if the daemon dies. */
void pd_reaper_on_exit(struct pd_daemon *d, bool keep)
{
	if (d->reaper > 0 && write(d->reaper_cmd, keep ? "k" : "d", 1) != 1)
		pd_log(d, LOG_ERR, "cannot tell the reaper on_exit = %s: %s",
		       pd_on_exit_name(keep), strerror(errno));
}

/* Tell the reaper what to do with the pins and wait until it did it.
 * Returns -1 (logged) when it could not remove them all. */
int pd_reaper_finish(struct pd_daemon *d, bool keep)
{
	char c = keep ? 'K' : 'D';
	unsigned char r = 0;
	ssize_t n = -1;
	bool left;

	if (d->reaper <= 0)
		return 0;
	if (write(d->reaper_cmd, &c, 1) == 1) {
		while ((n = read(d->reaper_done, &r, 1)) < 0 && errno == EINTR)
			;
	}
	left = !keep && (n != 1 || r);
	if (left)
		pd_log(d, LOG_ERR, UNPIN_FAILED, d->pin_dir,
		       n == 1 ? strerror(r) : "the reaper did not answer");
	close(d->reaper_cmd);
	close(d->reaper_done);
	waitpid(d->reaper, NULL, 0);
	d->reaper = 0;
	return left ? -1 : 0;
}
