/**
 * The host-side helper a shell session runs under (`python3 -c PTY_HELPER MODE COLS ROWS ARGV…`).
 *
 * Why a helper: `runc exec -t` in the foreground insists on a terminal as its own stdio (it puts
 * it in raw mode and copies between it and the container's PTY, resizing the latter on SIGWINCH),
 * and Node cannot allocate a PTY nor receive runc's console-socket fd (no SCM_RIGHTS) without a
 * native module. Python's `pty` module is on nearly every Linux host (CI installs python3).
 *
 * Mode "tty": the command runs on a fresh host PTY (set raw before exec, so the host side neither
 * echoes nor turns ^C into a signal: the container's PTY does that); a resize sets the host PTY's
 * size, which SIGWINCHes runc, which resizes the container's. Mode "pipe": plain pipes. Mode
 * "term": a PTY left as a terminal emulator gives it (cooked: echo, ^C → SIGINT), for tests that
 * drive a program as a user at a terminal would (testing/pty-driver.ts).
 * Stdin carries shell frames (input, resize, EOF; shell-protocol.ts); stdout carries stdout/stderr
 * frames. The helper exits with the command's exit status (128+N for signal N). Input not yet
 * taken by the process is bounded: past 1 MiB the helper stops reading its stdin (backpressure).
 * Its stdin closing means the client left: the command gets SIGHUP.
 */
export const PTY_HELPER = String.raw`
import os, sys, struct, fcntl, termios, select, signal, tty
MAX = 65536
PENDING_MAX = 1 << 20

def out(t, data):
    b = struct.pack('>BI', t, len(data)) + data
    while b:
        n = os.write(1, b)
        b = b[n:]

def child(argv, prepare):
    try:
        for s in (signal.SIGPIPE, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM):
            signal.signal(s, signal.SIG_DFL)
        prepare()
        os.execvp(argv[0], argv)
    except OSError as e:
        os.write(2, ('shell: cannot run %s: %s\r\n' % (argv[0], e.strerror)).encode())
    os._exit(127)

def main():
    mode, cols, rows, argv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    master = None
    if mode in ('tty', 'term'):
        # Sized and made raw before the fork: input written at once is neither echoed nor flushed.
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
        if mode == 'tty': tty.setraw(slave, termios.TCSANOW)
        pid = os.fork()
        if pid == 0:
            def prepare():
                os.setsid()
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                for fd in (0, 1, 2): os.dup2(slave, fd)
                os.close(slave); os.close(master)
            child(argv, prepare)
        os.close(slave)
        sources = {master: 4}
        sink = master
    else:
        r0, w0 = os.pipe(); r1, w1 = os.pipe(); r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:
            def prepare():
                os.dup2(r0, 0); os.dup2(w1, 1); os.dup2(w2, 2)
                for fd in (r0, w0, r1, w1, r2, w2): os.close(fd)
                os.setsid()
            child(argv, prepare)
        for fd in (r0, w1, w2): os.close(fd)
        sources = {r1: 4, r2: 7}
        sink = w0
    os.set_blocking(sink, False)
    pending = b''
    inbuf = b''
    reading = True
    close_sink = False
    while sources:
        rl = list(sources) + ([0] if reading and len(pending) < PENDING_MAX else [])
        wl = [sink] if pending and sink is not None else []
        r, w, _ = select.select(rl, wl, [])
        for fd in r:
            if fd == 0:
                chunk = os.read(0, MAX)
                if not chunk:
                    reading = False
                    try: os.kill(pid, signal.SIGHUP)
                    except ProcessLookupError: pass
                    continue
                inbuf += chunk
                while len(inbuf) >= 5:
                    t, n = struct.unpack('>BI', inbuf[:5])
                    if n > MAX: sys.exit(70)
                    if len(inbuf) < 5 + n: break
                    payload, inbuf = inbuf[5:5 + n], inbuf[5 + n:]
                    if t == 1:
                        pending += payload
                    elif t == 2 and len(payload) == 4:
                        c, r_ = struct.unpack('>HH', payload)
                        if master is not None:
                            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack('HHHH', r_, c, 0, 0))
                    elif t == 3:
                        if master is not None: pending += b'\x04'
                        else: close_sink = True
                continue
            try:
                data = os.read(fd, MAX)
            except OSError:
                data = b''  # EIO: every process on the PTY's other side is gone
            if data: out(sources[fd], data)
            else: del sources[fd]
        if w and sink is not None:
            try:
                n = os.write(sink, pending)
                pending = pending[n:]
            except BlockingIOError:
                pass
            except OSError:
                pending = b''
        if close_sink and not pending and sink is not None and master is None:
            os.close(sink)
            sink = None
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    sys.exit(128 - code if code < 0 else code)

main()
`;
