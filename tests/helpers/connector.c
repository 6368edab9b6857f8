// SPDX-License-Identifier: Apache-2.0
/*
 * Test and benchmark client: makes TCP connects and prints, per attempt, one JSON
 * line of ground truth (pid, tid, source port, outcome) for the tests to compare
 * lightmon's events against. Static, so it also runs in a bare busybox container.
 *
 *   connector [-n COUNT] [-c COMM] [-t TIMEOUT_MS] [-w WAIT_MS] [-q] [-r] [-T SECS] ADDR PORT
 *   connector -L [-T SECS] [-b BACKLOG] [-A|-H] ADDR PORT
 *   connector -t TIMEOUT_MS -e PROG ADDR PORT [ARG...]
 *
 * -c renames the process (prctl PR_SET_NAME) before connecting, so tests can use
 *    hostile names; -t makes the connect non-blocking and gives up after TIMEOUT_MS
 *    (the attempt is then reported "pending"); -w sleeps after the last connect;
 *    -k keeps the connections open until exit; -e PROG then execs PROG with the
 *    ARGs instead of exiting, the last socket (still in its handshake) kept open
 *    across the exec: the connect belongs to connector, not to PROG.
 * For benchmarks: -q prints one summary line instead of one line per attempt, -r
 *    closes with RST (no TIME_WAIT), -T stops after SECS seconds whatever COUNT says.
 * -k -r -w WAIT_MS keeps the last connection open for WAIT_MS, then aborts it with
 *    RST (SO_LINGER 0): the peer sees a connection reset.
 * -L listens on ADDR PORT (0: any port), prints the port, accepts and closes every
 *    connection until -T SECS pass or it is killed. With -A it never accepts: once
 *    its queue (-b BACKLOG) is full the kernel drops further SYNs, which holds new
 *    connects pending without any firewall rule. With -H it accepts and holds every
 *    connection open until it exits.
 * -L -F NPROC -n COUNT opens COUNT listening sockets (any port), prints "ready",
 *    forks NPROC children that hold them all, and sleeps -T SECS: the many processes
 *    sharing many sockets that the start-up snapshot must not multiply.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int listen_loop(const struct sockaddr *sa, socklen_t len, int family, double secs, int backlog, int accepting,
		       int hold)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
		perror("listen");
		return 1;
	}
	struct sockaddr_storage local;
	socklen_t ll = sizeof(local);
	getsockname(fd, (struct sockaddr *)&local, &ll);
	printf("%d\n", ntohs(family == AF_INET ? ((struct sockaddr_in *)&local)->sin_port
					       : ((struct sockaddr_in6 *)&local)->sin6_port));
	fflush(stdout);
	double end = now_s() + (secs > 0 ? secs : 1e9);
	while (now_s() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (!accepting) {
			usleep(200 * 1000);
			continue;
		}
		if (poll(&p, 1, 200) != 1)
			continue;
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c >= 0 && !hold)
			close(c);
	}
	return 0;
}

static int many_listeners(const struct sockaddr *sa, socklen_t len, int family, int count, int nproc, double secs)
{
	for (int i = 0; i < count; i++) {
		int fd = socket(family, SOCK_STREAM, 0);
		if (fd < 0 || bind(fd, sa, len) < 0 || listen(fd, 16) < 0) {
			perror("listen");
			return 1;
		}
	}
	for (int i = 0; i < nproc; i++) {
		pid_t p = fork();
		if (p < 0) {
			perror("fork");
			return 1;
		}
		if (p == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL); /* ended with the parent */
			if (getppid() == 1)
				_exit(0);
			usleep((useconds_t)(secs * 1e6));
			_exit(0);
		}
	}
	printf("ready\n");
	fflush(stdout);
	usleep((useconds_t)(secs * 1e6));
	return 0;
}

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
	int count = 1, timeout_ms = 0, wait_ms = 0, quiet = 0, rst = 0, listen_mode = 0, backlog = 4096, accepting = 1;
	int keep = 0, hold = 0, nproc = 0, opt;
	double max_secs = 0;
	const char *comm = NULL, *exec_prog = NULL;

	while ((opt = getopt(argc, argv, "+n:c:t:w:qrT:Lb:AHF:ke:")) != -1) {
		switch (opt) {
		case 'n': count = atoi(optarg); break;
		case 'c': comm = optarg; break;
		case 't': timeout_ms = atoi(optarg); break;
		case 'w': wait_ms = atoi(optarg); break;
		case 'q': quiet = 1; break;
		case 'r': rst = 1; break;
		case 'T': max_secs = atof(optarg); break;
		case 'L': listen_mode = 1; break;
		case 'b': backlog = atoi(optarg); break;
		case 'A': accepting = 0; break;
		case 'H': hold = 1; break;
		case 'F': nproc = atoi(optarg); break;
		case 'k': keep = 1; break;
		case 'e': exec_prog = optarg; keep = 1; break;
		default:
			fprintf(stderr, "usage: connector [-n COUNT] [-c COMM] [-t TIMEOUT_MS] [-w WAIT_MS] ADDR PORT\n");
			return 2;
		}
	}
	if (argc - optind != 2 && !(exec_prog && argc - optind > 2)) {
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
	if (listen_mode && nproc > 0)
		return many_listeners((struct sockaddr *)&ss, len, family, count, nproc, max_secs > 0 ? max_secs : 60);
	if (listen_mode)
		return listen_loop((struct sockaddr *)&ss, len, family, max_secs, backlog, accepting, hold);
	if (comm)
		prctl(PR_SET_NAME, comm, 0, 0, 0);
	double start = now_s(), end = start + (max_secs > 0 ? max_secs : 1e9);
	int done = 0, ok = 0, last_fd = -1;
	for (int i = 0; i < count && now_s() < end; i++) {
		const char *status;
		int fd = connect_once((struct sockaddr *)&ss, len, family, timeout_ms, &status);
		done++;
		ok += status[0] == 'e';
		if (quiet) {
			if (keep) /* -q -k: held open until exit */
				continue;
			if (rst) {
				struct linger lg = { .l_onoff = 1, .l_linger = 0 };
				setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			}
			close(fd);
			continue;
		}
		struct sockaddr_storage local;
		socklen_t ll = sizeof(local);
		int sport = 0;
		if (getsockname(fd, (struct sockaddr *)&local, &ll) == 0)
			sport = ntohs(family == AF_INET ? ((struct sockaddr_in *)&local)->sin_port
							: ((struct sockaddr_in6 *)&local)->sin6_port);
		printf("{\"pid\":%d,\"tid\":%ld,\"sport\":%d,\"status\":\"%s\"}\n", getpid(), syscall(SYS_gettid), sport, status);
		fflush(stdout);
		if (!keep)
			close(fd);
		last_fd = fd;
	}
	if (exec_prog) {
		fcntl(last_fd, F_SETFD, 0); /* the socket survives the exec */
		argv[optind + 1] = (char *)exec_prog;
		execv(exec_prog, &argv[optind + 1]);
		perror("execv");
		return 1;
	}
	if (quiet)
		printf("{\"attempts\":%d,\"established\":%d,\"seconds\":%.6f}\n", done, ok, now_s() - start);
	fflush(stdout);
	if (wait_ms > 0)
		usleep(wait_ms * 1000);
	if (keep && rst && last_fd >= 0) { /* abort the kept connection: the peer sees a reset */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(last_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(last_fd);
	}
	return 0;
}
