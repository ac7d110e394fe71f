// SPDX-License-Identifier: GPL-2.0-only
/*
 * One instance per cgroup subtree. Two instances on related cgroups (the
 * same one, or one an ancestor of the other) both run their sock_ops
 * program for the same connections, and a socket can be in one socket
 * map only: each would police part of the traffic and neither all of it.
 * At start policyd looks for another instance's sock_ops program on its
 * cgroup, every ancestor up to the cgroup2 mount and every descendant,
 * and refuses to start when it finds one, naming it. The kept state of
 * this instance's own pin directory (a takeover) is not another instance.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"
#include "policyd.skel.h"

#define PD_QUERY_MAX 64

/* Whether program id is a policyd sock_ops program; *who names its
 * instance (empty when it cannot be read). */
static bool is_instance(uint32_t id, struct pd_instance *who)
{
	struct bpf_prog_info info;
	uint32_t len = sizeof(info), maps[PD_QUERY_MAX];
	int fd = bpf_prog_get_fd_by_id(id);
	bool found = false;

	memset(who, 0, sizeof(*who));
	if (fd < 0)
		return false;
	memset(&info, 0, sizeof(info));
	info.nr_map_ids = PD_QUERY_MAX;
	info.map_ids = (uint64_t)(unsigned long)maps;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) || strcmp(info.name, "pd_sockops")) {
		close(fd);
		return false;
	}
	close(fd);
	for (uint32_t i = 0; i < info.nr_map_ids && i < PD_QUERY_MAX && !found; i++) {
		struct bpf_map_info mi;
		uint32_t ml = sizeof(mi), zero = 0;
		int mfd = bpf_map_get_fd_by_id(maps[i]);

		if (mfd < 0)
			continue;
		memset(&mi, 0, sizeof(mi));
		if (!bpf_obj_get_info_by_fd(mfd, &mi, &ml) && !strcmp(mi.name, "pd_instance"))
			found = !bpf_map_lookup_elem(mfd, &zero, who);
		close(mfd);
	}
	who->pin_dir[PD_PATH_MAX - 1] = who->cgroup[PD_PATH_MAX - 1] = '\0';
	return true;
}

/* Another instance's sock_ops program attached to cgroup dir itself. */
static bool other_at(const struct pd_daemon *d, const char *dir, struct pd_instance *who)
{
	uint32_t ids[PD_QUERY_MAX], cnt = PD_QUERY_MAX, flags = 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool found = false;

	if (fd < 0)
		return false;
	if (!bpf_prog_query(fd, BPF_CGROUP_SOCK_OPS, 0, &flags, ids, &cnt))
		for (uint32_t i = 0; i < cnt && !found; i++)
			found = is_instance(ids[i], who) && strcmp(who->pin_dir, d->pin_dir);
	close(fd);
	return found;
}

static bool other_below(const struct pd_daemon *d, const char *dir, struct pd_instance *who,
			char *where, size_t cap, int depth)
{
	char path[4200];
	struct dirent *de;
	bool found = false;
	DIR *dd;

	if (depth > 64 || !(dd = opendir(dir)))
		return false;
	while (!found && (de = readdir(dd))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (other_at(d, path, who)) {
			snprintf(where, cap, "%s", path);
			found = true;
		} else {
			found = other_below(d, path, who, where, cap, depth + 1);
		}
	}
	closedir(dd);
	return found;
}

int pd_instance_check(const struct pd_daemon *d, const char *mount, char *why, size_t cap)
{
	char dir[4096], where[4200];
	struct pd_instance who;
	bool found = false;
	size_t root = strlen(mount);

	/* the cgroup, then its ancestors up to the mount */
	snprintf(dir, sizeof(dir), "%s", d->cgroup);
	for (;;) {
		char *slash;

		if (other_at(d, dir, &who)) {
			snprintf(where, sizeof(where), "%s", dir);
			found = true;
			break;
		}
		if (strlen(dir) <= root || !(slash = strrchr(dir, '/')) || slash == dir)
			break;
		*slash = '\0';
	}
	if (!found)
		found = other_below(d, d->cgroup, &who, where, sizeof(where), 0);
	if (!found)
		return 0;
	snprintf(why, cap, "another policyd (pins %s) polices cgroup %s, %s %s; two instances "
		 "on nested cgroups would each police part of the same connections. Stop it, or "
		 "give this one a cgroup neither above nor below it",
		 who.pin_dir[0] ? who.pin_dir : "unknown", where,
		 !strcmp(where, d->cgroup) ? "the same as" :
		 strlen(where) < strlen(d->cgroup) ? "above" : "below", d->cgroup);
	return -EBUSY;
}
