// SPDX-License-Identifier: Apache-2.0
/*
 * Test and benchmark client: makes TCP connects and prints, per attempt, one JSON
 * line of ground truth (pid, tid, source port, outcome) for the tests to compare
 * lightmon's events against. Static, so it also runs in a bare busybox container.
 *
 *   connector [-n COUNT] [-c COMM] [-t TIMEOUT_MS] [-w WAIT_MS] ADDR PORT
 *
 * -c renames the process (prctl PR_SET_NAME) before connecting, so tests can use
 *    hostile names; -t makes the connect non-blocking and gives up after TIMEOUT_MS
 *    (the attempt is then reported "pending"); -w sleeps after the last connect.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int connect_once(const struct sockaddr *sa, socklen_t len, int family, int timeout_ms, const char **status)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("socket");
		exit(1);
	}
	if (timeout_ms > 0)
		fcntl(fd, F_SETFL, O_NONBLOCK);
	int rc = connect(fd, sa, len);
	int err = rc == 0 ? 0 : errno;
	if (rc < 0 && err == EINPROGRESS) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		if (poll(&p, 1, timeout_ms) == 1) {
			socklen_t l = sizeof(err);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
		} else {
			err = EINPROGRESS;
		}
	}
	*status = err == 0 ? "established" : err == ECONNREFUSED ? "refused" : err == EINPROGRESS ? "pending" : "error";
	return fd;
}

int main(int argc, char **argv)
{
	int count = 1, timeout_ms = 0, wait_ms = 0, opt;
	const char *comm = NULL;

	while ((opt = getopt(argc, argv, "n:c:t:w:")) != -1) {
		switch (opt) {
		case 'n': count = atoi(optarg); break;
		case 'c': comm = optarg; break;
		case 't': timeout_ms = atoi(optarg); break;
		case 'w': wait_ms = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: connector [-n COUNT] [-c COMM] [-t TIMEOUT_MS] [-w WAIT_MS] ADDR PORT\n");
			return 2;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: connector [-n COUNT] [-c COMM] [-t TIMEOUT_MS] [-w WAIT_MS] ADDR PORT\n");
		return 2;
	}
	const char *addr = argv[optind];
	int port = atoi(argv[optind + 1]);
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int family;
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = family = AF_INET6;
		s6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1) return 2;
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = family = AF_INET;
		s4->sin_port = htons(port);
		if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1) return 2;
		len = sizeof(*s4);
	}
	if (comm)
		prctl(PR_SET_NAME, comm, 0, 0, 0);
	for (int i = 0; i < count; i++) {
		const char *status;
		int fd = connect_once((struct sockaddr *)&ss, len, family, timeout_ms, &status);
		struct sockaddr_storage local;
		socklen_t ll = sizeof(local);
		int sport = 0;
		if (getsockname(fd, (struct sockaddr *)&local, &ll) == 0)
			sport = ntohs(family == AF_INET ? ((struct sockaddr_in *)&local)->sin_port
							: ((struct sockaddr_in6 *)&local)->sin6_port);
		printf("{\"pid\":%d,\"tid\":%ld,\"sport\":%d,\"status\":\"%s\"}\n", getpid(), syscall(SYS_gettid), sport, status);
		close(fd);
	}
	fflush(stdout);
	if (wait_ms > 0)
		usleep(wait_ms * 1000);
	return 0;
}
