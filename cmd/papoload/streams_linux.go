//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// On Linux the streams are read by epoll loops rather than by a goroutine
// each. In the fan-out benchmark the tool shares the machine with the
// server, and a goroutine per stream costs, per delivery, a wake from Go's
// netpoller, the read that brings the event, a second read that finds
// nothing (EAGAIN) before parking, and a copy through bufio. A loop waiting
// on thousands of sockets pays one wake for all that arrived meanwhile and,
// being level-triggered, one read per delivery.
//
// Two choices, measured on 2 cores with 5,000 streams, nearly halve the
// loops' own cost again:
//
//   - There are GOMAXPROCS-1 loops (at least one), not GOMAXPROCS. A loop
//     blocked in epoll_wait keeps its P in a system call. While no P is
//     idle, sysmon takes such a P back once the call has lasted 20 µs,
//     waking a thread to hand it over, and looks again 20 µs later; with
//     a loop on every P that happens around each of the loops' many short
//     waits. With a P left idle, sysmon leaves them be and sleeps longer.
//     Fewer loops also find more events per wake.
//   - A loop reads a duplicate of the socket, and the net.Conn is closed
//     at hand-over. Otherwise Go's netpoller keeps the socket registered
//     (edge-triggered), and every delivery also wakes the thread waiting
//     in it, only to find nobody to run.
const (
	loopReadBuf  = 64 << 10 // shared by all of a loop's streams
	loopEvents   = 256
	loopWaitMS   = 100 // how soon a loop notices that the run is closing
	loopCheckDue = int64(time.Second)
)

type epollReader struct {
	all   []*stream // the set's streams by index, as epoll events name them
	loops []*epollLoop
	next  atomic.Uint64
}

// epollLoop reads the streams handed to it. mu is held while the loop
// acts on a wake and while a stream is added, so that a stream's state
// passes from the goroutine that dialed it to the loop in good order.
type epollLoop struct {
	set    *streamSet
	epfd   int
	all    []*stream
	exited chan struct{}

	mu       sync.Mutex
	stopped  bool
	live     []*stream // registered, each at its slot
	checkDue int64     // when to look again for streams late to ready
}

// newStreamReader starts the epoll loops; if epoll cannot be had, each
// stream gets its own goroutine instead.
func newStreamReader(set *streamSet) streamReader {
	r := &epollReader{all: set.streams}
	for range max(1, runtime.GOMAXPROCS(0)-1) {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			for _, l := range r.loops {
				syscall.Close(l.epfd)
			}
			fmt.Fprintf(os.Stderr, "papoload: epoll_create1: %v; reading each stream with its own goroutine\n", err)
			return goroutineReader{}
		}
		r.loops = append(r.loops, &epollLoop{
			set:      set,
			epfd:     epfd,
			all:      set.streams,
			exited:   make(chan struct{}),
			checkDue: now() + loopCheckDue,
		})
	}
	for _, l := range r.loops {
		go l.run()
	}
	return r
}

func (r *epollReader) take(st *stream) {
	if err := r.pick().add(st); err != nil {
		if st.set.closing.Load() {
			// The socket was closed under the stream, or the loop had
			// stopped: told as the goroutine reader would tell it.
			err = st.p.readError(st.readErr(net.ErrClosed))
		}
		st.finish(err)
	}
}

// stop waits for the loops to end, then resets and closes the sockets
// they read: only now can no loop read a socket number that was reused.
func (r *epollReader) stop() {
	for _, l := range r.loops {
		<-l.exited
	}
	for _, st := range r.all {
		if st != nil && st.fd >= 0 {
			resetClose(st.fd)
			st.fd = -1
		}
	}
}

// open connects st without blocking: socket, bind, connect, and the
// request sent at once, since on loopback the handshake has mostly
// completed by the time connect returns. If it has not, the loop sends
// the request when the socket turns writable. Against Go's dialer this
// saves, per stream, a goroutine and its park and wake, Go's poller
// registering and then dropping the socket, the keep-alive options, the
// address lookups, and the duplicate: nine system calls of fifteen.
func (r *epollReader) open(st *stream, src net.IP, dst *net.TCPAddr, req string) bool {
	src4, dst4 := src.To4(), dst.IP.To4()
	if src4 == nil || dst4 == nil {
		return false
	}
	st.begin()
	st.remote = dst
	fd, err := connectRaw([4]byte(src4), &syscall.SockaddrInet4{Port: dst.Port, Addr: [4]byte(dst4)})
	if err != nil {
		st.finish(st.dialErr(src, err))
		return true
	}
	n, err := rawSend(fd, req)
	switch {
	case err == syscall.EAGAIN:
		st.pending = req // still connecting
	case err != nil:
		resetClose(fd)
		st.finish(st.dialErr(src, err))
		return true
	default:
		st.pending = req[n:]
	}
	events := uint32(syscall.EPOLLIN | syscall.EPOLLRDHUP)
	if st.pending != "" {
		events |= syscall.EPOLLOUT
	}
	if err := r.pick().register(st, fd, events); err != nil {
		st.finish(st.p.readError(st.readErr(err)))
	}
	return true
}

// connectRaw starts a non-blocking connect from src (its port left to
// connect, see ipBindAddressNoPort) to dst.
func connectRaw(src [4]byte, dst *syscall.SockaddrInet4) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: src}); err != nil {
		syscall.Close(fd)
		return -1, os.NewSyscallError("bind", err)
	}
	if err := syscall.Connect(fd, dst); err != nil && err != syscall.EINPROGRESS {
		syscall.Close(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

// rawSend writes what it can of s; MSG_NOSIGNAL, as Go's own writes
// avoid SIGPIPE.
func rawSend(fd int, s string) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd),
		uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(len(s)), syscall.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// sendPending sends what is left of st's request, once its connect has
// finished, and reports whether all of it is sent. A connect that failed
// is reported as the dial's error, the way Go's dialer words it.
func (l *epollLoop) sendPending(st *stream) bool {
	n, err := rawSend(st.fd, st.pending)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return false
	case err != nil:
		l.end(st, st.dialErr(nil, err))
		return false
	}
	st.pending = st.pending[n:]
	if st.pending != "" {
		return false
	}
	st.set.lateSends.Add(1)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(st.fd), Pad: int32(st.idx)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, st.fd, &ev); err != nil {
		l.end(st, st.readErr(os.NewSyscallError("epoll_ctl", err)))
		return false
	}
	return true
}

func (r *epollReader) pick() *epollLoop {
	return r.loops[(r.next.Add(1)-1)%uint64(len(r.loops))]
}

// add takes st's socket over and registers it with the loop, which owns
// the stream from then on.
func (l *epollLoop) add(st *stream) error {
	sc, ok := st.conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("no socket under %T", st.conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd, dupErr := -1, error(nil)
	// Duplicated within Control, while the conn cannot be closed and its
	// number given to another socket.
	err = rc.Control(func(f uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f, syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			dupErr = os.NewSyscallError("fcntl", errno)
			return
		}
		fd = int(r)
	})
	if err == nil {
		err = dupErr
	}
	if err != nil {
		return err
	}
	// Closing the conn takes the socket out of Go's netpoller; the
	// duplicate keeps it open. The conn stays in the stream, closed, for
	// its addresses.
	_ = st.conn.Close()
	return l.register(st, fd, syscall.EPOLLIN|syscall.EPOLLRDHUP)
}

// register adds st's socket fd to the loop, waiting for events.
func (l *epollLoop) register(st *stream, fd int, events uint32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		resetClose(fd)
		return net.ErrClosed
	}
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(st.idx)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		resetClose(fd)
		return os.NewSyscallError("epoll_ctl", err)
	}
	st.fd = fd
	st.slot = len(l.live)
	l.live = append(l.live, st)
	return nil
}

func (l *epollLoop) run() {
	defer close(l.exited)
	events := make([]syscall.EpollEvent, loopEvents)
	buf := make([]byte, loopReadBuf)
	nap := l.set.cfg.readNap
	found := false // the last look found streams to read
	for {
		n, err := pollNow(l.epfd, events)
		if n == 0 && err == nil && found && nap > 0 {
			// Events come in bursts: one post reaches every stream. Once
			// a look has found some, a short nap lets the rest of the
			// burst gather, so that one wake reads many streams, rather
			// than the loop sleeping and being woken for each event.
			// Receipts are timed after the read: the nap can only add to
			// the latencies measured.
			time.Sleep(nap)
			n, err = pollNow(l.epfd, events)
		}
		if n == 0 && err == nil {
			n, err = syscall.EpollWait(l.epfd, events, loopWaitMS)
		}
		found = n > 0
		if err != nil && err != syscall.EINTR {
			l.mu.Lock()
			l.stopLocked(os.NewSyscallError("epoll_wait", err))
			l.mu.Unlock()
			return
		}
		l.mu.Lock()
		if l.set.closing.Load() {
			l.stopLocked(nil)
			l.mu.Unlock()
			return
		}
		for i := range max(n, 0) {
			ev := &events[i]
			st := l.all[ev.Pad]
			if st.slot < 0 {
				continue // ended earlier in this wake
			}
			if st.pending != "" && !l.sendPending(st) {
				continue // connecting still, or failed
			}
			// One read per wake: the level-triggered wait reports the
			// socket again if it holds more, so no read is spent on
			// learning that it is empty.
			nr, err := rawRead(st.fd, buf)
			at := now()
			switch {
			case nr > 0:
				if perr := st.p.feed(buf[:nr], at); perr != nil {
					l.end(st, perr)
				}
			case err == syscall.EAGAIN || err == syscall.EINTR:
			case err != nil:
				l.end(st, st.p.readError(st.readErr(os.NewSyscallError("read", err))))
			default:
				l.end(st, st.p.readError(io.EOF))
			}
		}
		l.giveUpLate()
		l.mu.Unlock()
	}
}

// giveUpLate ends, about once a second, the streams not ready within
// readyTimeout of their request, as the connection's deadline did when
// a goroutine read each stream.
func (l *epollLoop) giveUpLate() {
	t := now()
	if t < l.checkDue {
		return
	}
	l.checkDue = t + loopCheckDue
	for i := 0; i < len(l.live); {
		st := l.live[i]
		if st.p.isReady || t < st.readyBy {
			i++
			continue
		}
		// end moves the last live stream into slot i: look at i again.
		l.end(st, st.p.readError(st.readErr(os.ErrDeadlineExceeded)))
	}
}

// end unregisters st and finishes it. The socket stays open until the
// reader stops, as it did when a goroutine read each stream, so its
// number cannot come back in a later wake as another socket's.
func (l *epollLoop) end(st *stream, err error) {
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, st.fd, nil)
	last := l.live[len(l.live)-1]
	l.live[st.slot] = last
	last.slot = st.slot
	l.live[len(l.live)-1] = nil
	l.live = l.live[:len(l.live)-1]
	st.slot = -1
	st.finish(err)
}

// stopLocked finishes every stream still live, with err, or as closed by
// closeAll when err is nil, and closes the epoll fd; nothing is added
// after it.
func (l *epollLoop) stopLocked(err error) {
	l.stopped = true
	for _, st := range l.live {
		e := err
		if e == nil {
			e = st.readErr(net.ErrClosed)
		}
		st.slot = -1
		st.finish(st.p.readError(e))
	}
	l.live = nil
	syscall.Close(l.epfd)
}

// resetClose closes a socket with a reset, as closeAll does with conns
// (see there).
func resetClose(fd int) {
	_ = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	_ = syscall.Close(fd)
}

// readErr words err as a read through st's conn would have, so that the
// errors reported are those of the goroutine reader.
func (st *stream) readErr(err error) error {
	if st.conn != nil {
		return &net.OpError{Op: "read", Net: "tcp", Source: st.conn.LocalAddr(), Addr: st.conn.RemoteAddr(), Err: err}
	}
	var local net.Addr
	if sa, serr := syscall.Getsockname(st.fd); serr == nil {
		if in4, ok := sa.(*syscall.SockaddrInet4); ok {
			local = &net.TCPAddr{IP: net.IP(in4.Addr[:]), Port: in4.Port}
		}
	}
	return &net.OpError{Op: "read", Net: "tcp", Source: local, Addr: st.remote, Err: err}
}

// dialErr words a failed connect as Go's dialer would; src is nil once
// the connect was under way.
func (st *stream) dialErr(src net.IP, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError("connect", errno)
	}
	var source net.Addr
	if src != nil {
		source = &net.TCPAddr{IP: src}
	}
	return &net.OpError{Op: "dial", Net: "tcp", Source: source, Addr: st.remote, Err: err}
}

// pollNow and rawRead are epoll_wait with no timeout and read(2) on a
// non-blocking socket, made without telling the scheduler: neither can
// block, and announcing them as syscalls lets the runtime's monitor hand
// the loop's P to another thread mid-call, thousands of times a second,
// which costs more than the calls. Only a wait that may sleep is made as
// a syscall.
func pollNow(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func rawRead(fd int, buf []byte) (int, error) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (Linux 4.2+): binding
// to a source address then leaves the port to connect(), which may reuse
// ports in TIME_WAIT from earlier runs and needs only the whole 4-tuple to
// be unique. Without it, bind() searches the ephemeral range for a port
// free on every destination, which grows slow with tens of thousands of
// sockets in TIME_WAIT.
const ipBindAddressNoPort = 24

// dialControl binds a stream's socket without choosing its port.
func dialControl(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
}
