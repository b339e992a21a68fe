/*
 * beta9 sandbox init: PID 1 of a sandbox container. Node cannot wait for processes it did not
 * start, so without this every orphan (a fork bomb's children, a daemonised server) would stay a
 * zombie, hold a pid against the container's pids limit, and in the end stop every new exec.
 * This init starts argv[1..], forwards SIGTERM/SIGINT/SIGHUP to it, reaps every child, and exits
 * with the main child's status. Compiled static by the worker when it builds the runner bundle.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child = 0;

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: init command [args...]\n");
    return 2;
  }
  struct sigaction sa = {0};
  sa.sa_handler = forward;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  pid_t pid = fork();
  if (pid < 0) {
    perror("init: fork");
    return 1;
  }
  if (pid == 0) {
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    execv(argv[1], argv + 1);
    perror("init: exec");
    _exit(127);
  }
  child = pid;
  for (;;) {
    int status;
    pid_t done = waitpid(-1, &status, 0);
    if (done < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (done == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return 1;
    }
  }
}
