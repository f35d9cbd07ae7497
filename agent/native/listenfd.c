/*
 * listenfd: create a listening TCP socket that Node never polls.
 *
 * The agent must own each service's listening socket (so connections queue in the kernel backlog while no
 * HAProxy runs) without accepting on it. A socket from net.createServer().listen() is registered with
 * libuv's epoll loop and Node races HAProxy for every connection. This addon returns a plain fd made with
 * socket/bind/listen; Node never sees it except as a number handed to child_process.spawn's stdio array.
 * SOCK_CLOEXEC keeps it out of unrelated children; spawn's dup2 into fd 3, 4, ... clears the flag for HAProxy.
 */
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, err == EADDRINUSE ? "EADDRINUSE" : "ESOCKET", msg);
  return NULL;
}

/* listenTcp(host: string, port: number, backlog: number): number (the fd) */
static napi_value listen_tcp(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char host[64];
  size_t host_len = 0;
  int32_t port = 0, backlog = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) {
    napi_throw_type_error(env, NULL, "listenTcp(host, port, backlog)");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, argv[0], host, sizeof host, &host_len) != napi_ok ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok ||
      napi_get_value_int32(env, argv[2], &backlog) != napi_ok) {
    napi_throw_type_error(env, NULL, "listenTcp(host: string, port: number, backlog: number)");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t sslen;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sslen = sizeof *sin;
  } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    sslen = sizeof *sin6;
  } else {
    napi_throw_type_error(env, "EINVAL", "listenTcp: host must be an IPv4 or IPv6 literal");
    return NULL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
    int err = errno;
    close(fd);
    char what[128];
    snprintf(what, sizeof what, "bind %s:%d", host, port);
    return throw_errno(env, what, err);
  }
  if (listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "listen", err);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/* The one int32 argument of a function(fd); false (a TypeError thrown, naming `usage`) when it is missing. */
static bool fd_arg(napi_env env, napi_callback_info info, const char *usage, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1 || napi_get_value_int32(env, argv[0], fd) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  return true;
}

/* localPort(fd: number): number */
static napi_value local_port(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "localPort(fd)", &fd)) return NULL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return throw_errno(env, "getsockname", errno);
  int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                      : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  napi_value result;
  napi_create_int32(env, port, &result);
  return result;
}

/* closeFd(fd: number): void */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "closeFd(fd)", &fd)) return NULL;
  if (close(fd) < 0) return throw_errno(env, "close", errno);
  return NULL;
}

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

/*
 * dupFrom(pid, fd): number | null — a copy of another process's fd (pidfd_open + pidfd_getfd, Linux >= 5.6), close-on-exec.
 * HAProxy 2.6 does not export listeners it inherited as fd@N through `_getsocks` (measured: only its stats socket
 * comes back, with `expose-fd listeners` set), so an agent that takes over a
 * running HAProxy copies its listening sockets this way. Needs ptrace access to that process: root, or the same
 * user while HAProxy has not changed its uid.
 */
static napi_value dup_from(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t pid = -1, fd = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 2 || napi_get_value_int32(env, argv[0], &pid) != napi_ok || napi_get_value_int32(env, argv[1], &fd) != napi_ok || pid <= 0 || fd < 0) {
    napi_throw_type_error(env, NULL, "dupFrom(pid, fd)");
    return NULL;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return throw_errno(env, "pidfd_open", errno);
  int copy = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
  int err = errno;
  close(pidfd);
  napi_value result;
  if (copy < 0 && err == EBADF) { /* closed since it was listed: nothing to copy */
    napi_get_null(env, &result);
    return result;
  }
  if (copy < 0) return throw_errno(env, "pidfd_getfd (needs ptrace access to HAProxy: root, or the same user; seccomp must allow it)", err);
  napi_create_int32(env, copy, &result);
  return result;
}

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/*
 * pidOpen(pid): number | null — a pidfd for `pid` (close-on-exec), null when no such process. Signals sent through
 * it reach that process or nobody: never one that reused the pid after it exited.
 */
static napi_value pid_open(napi_env env, napi_callback_info info) {
  int32_t pid = 0;
  if (!fd_arg(env, info, "pidOpen(pid)", &pid)) return NULL;
  if (pid <= 0) {
    napi_throw_type_error(env, NULL, "pidOpen(pid)");
    return NULL;
  }
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  napi_value result;
  if (fd < 0 && errno == ESRCH) {
    napi_get_null(env, &result);
    return result;
  }
  if (fd < 0) return throw_errno(env, "pidfd_open", errno);
  napi_create_int32(env, fd, &result);
  return result;
}

/* pidSignal(pidfd, signal): boolean — false when the process has exited (ESRCH); signal 0 only asks. */
static napi_value pid_signal(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1, sig = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &sig) != napi_ok || fd < 0 || sig < 0 || sig > 64) {
    napi_throw_type_error(env, NULL, "pidSignal(pidfd, signal)");
    return NULL;
  }
  napi_value result;
  if (syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) < 0) {
    if (errno != ESRCH) return throw_errno(env, "pidfd_send_signal", errno);
    napi_get_boolean(env, false, &result);
    return result;
  }
  napi_get_boolean(env, true, &result);
  return result;
}

/* socketInfo(fd): {address, port, listening, tcp} or null when fd is not an IPv4/IPv6 socket. */
static napi_value socket_info(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "socketInfo(fd)", &fd)) return NULL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  napi_value result;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
    napi_get_null(env, &result);
    return result;
  }
  char host[INET6_ADDRSTRLEN] = "";
  int port;
  if (ss.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
    port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  } else {
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  int accepting = 0, type = 0;
  socklen_t optlen = sizeof accepting;
  getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &optlen);
  optlen = sizeof type;
  getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &optlen);
  napi_create_object(env, &result);
  napi_value v;
  napi_create_string_utf8(env, host, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "address", v);
  napi_create_int32(env, port, &v);
  napi_set_named_property(env, result, "port", v);
  napi_get_boolean(env, accepting != 0, &v);
  napi_set_named_property(env, result, "listening", v);
  napi_get_boolean(env, type == SOCK_STREAM, &v);
  napi_set_named_property(env, result, "tcp", v);
  return result;
}

/*
 * socketPair(datagram: boolean): [number, number] — an AF_UNIX socketpair, close-on-exec. The agent's admin channel to
 * HAProxy is a datagram pair (`stats socket sockpair@3`): HAProxy receives one connection per datagram, as an fd
 * (SCM_RIGHTS). A datagram pair, unlike a stream pair, does not wake HAProxy forever once the agent's end is closed
 * (measured on 2.6.12: a stream pair whose peer closed kept one HAProxy thread spinning at 100 % CPU). Each
 * conversation is a stream pair whose one end is sent over the channel.
 */
static napi_value socket_pair(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool datagram = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1 || napi_get_value_bool(env, argv[0], &datagram) != napi_ok) {
    napi_throw_type_error(env, NULL, "socketPair(datagram: boolean)");
    return NULL;
  }
  int sv[2];
  if (socketpair(AF_UNIX, (datagram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0, sv) < 0)
    return throw_errno(env, "socketpair", errno);
  napi_value result, v;
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, sv[0], &v);
  napi_set_element(env, result, 0, v);
  napi_create_int32(env, sv[1], &v);
  napi_set_element(env, result, 1, v);
  return result;
}

/* sendFd(via, fd): void — sends `fd` over the unix socket `via` (one byte and SCM_RIGHTS), never blocking. */
static napi_value send_fd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t via = -1, fd = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 2 || napi_get_value_int32(env, argv[0], &via) != napi_ok || napi_get_value_int32(env, argv[1], &fd) != napi_ok || via < 0 || fd < 0) {
    napi_throw_type_error(env, NULL, "sendFd(via, fd)");
    return NULL;
  }
  char byte = 0;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr hdr;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  if (sendmsg(via, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) return throw_errno(env, "sendmsg", errno);
  return NULL;
}

/*
 * lockFile(path): number — opens `path` (created 0600, close-on-exec) and takes flock(LOCK_EX|LOCK_NB) on it; the
 * returned fd holds the lock until it is closed or the process ends (a kill -9 included: the kernel releases it).
 * Throws with code ELOCKED when another process holds it.
 */
static napi_value lock_file(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4096];
  size_t len = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 || len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "lockFile(path)");
    return NULL;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return throw_errno(env, "open", errno);
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      napi_throw_error(env, "ELOCKED", "flock: held by another process");
      return NULL;
    }
    return throw_errno(env, "flock", err);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listenTcp", NULL, listen_tcp, NULL, NULL, NULL, napi_default, NULL},
      {"localPort", NULL, local_port, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
      {"socketInfo", NULL, socket_info, NULL, NULL, NULL, napi_default, NULL},
      {"dupFrom", NULL, dup_from, NULL, NULL, NULL, napi_default, NULL},
      {"socketPair", NULL, socket_pair, NULL, NULL, NULL, napi_default, NULL},
      {"sendFd", NULL, send_fd, NULL, NULL, NULL, napi_default, NULL},
      {"lockFile", NULL, lock_file, NULL, NULL, NULL, napi_default, NULL},
      {"pidOpen", NULL, pid_open, NULL, NULL, NULL, napi_default, NULL},
      {"pidSignal", NULL, pid_signal, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
